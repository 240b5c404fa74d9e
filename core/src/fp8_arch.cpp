// eva — instantiates the SIMD FP8 codec for one architecture, EVA_FP8_ARCH (an xsimd arch type). The
// build compiles this file once per architecture, each time with that architecture's compiler flags.
#include "fp8_kernel.hpp"

namespace eva::detail {

EVA_FP8_KERNEL_INSTANCE(, EVA_FP8_ARCH)

}  // namespace eva::detail
