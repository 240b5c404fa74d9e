// eva — instantiates the batch exp for one SIMD architecture, EVA_EXP_ARCH (an xsimd arch type). The
// build compiles this file once per architecture, each time with that architecture's compiler flags.
#include "exp_kernel.hpp"

namespace eva::detail {

EVA_EXP_KERNEL_INSTANCE(, EVA_EXP_ARCH)

}  // namespace eva::detail
