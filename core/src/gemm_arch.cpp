// eva — instantiates the GEMM kernel for one SIMD architecture, EVA_GEMM_ARCH (an xsimd arch type).
// The build compiles this file once per architecture, each time with that architecture's compiler flags.
#include "gemm_kernel.hpp"

namespace eva::detail {

EVA_GEMM_KERNEL_INSTANCE(, EVA_GEMM_ARCH, float)
EVA_GEMM_KERNEL_INSTANCE(, EVA_GEMM_ARCH, double)

}  // namespace eva::detail
