// eva — instantiates AdamW's SIMD update for one architecture, EVA_ADAMW_ARCH (an xsimd arch type). The
// build compiles this file once per architecture, each time with that architecture's compiler flags.
#include "adamw_kernel.hpp"

namespace eva::detail {

EVA_ADAMW_KERNEL_INSTANCE(, EVA_ADAMW_ARCH)

}  // namespace eva::detail
