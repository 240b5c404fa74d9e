// eva — instantiates the peak loop for one SIMD architecture, EVA_PEAK_ARCH (an xsimd arch type). The
// build compiles this file once per architecture, each time with that architecture's compiler flags.
#include "peak_kernel.hpp"

namespace eva::detail {

EVA_PEAK_KERNEL_INSTANCE(, EVA_PEAK_ARCH)

}  // namespace eva::detail
