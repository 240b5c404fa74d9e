// eva — exp_each: the batch kernel of exp_kernel.hpp on the widest SIMD level the CPU has.
#include "eva/exp.hpp"

#include "exp_kernel.hpp"
#include "simd_dispatch.hpp"

namespace eva {

#if defined(EVA_GEMM_DISPATCH)
namespace detail {
EVA_EXP_KERNEL_INSTANCE(extern, xsimd::avx512bw)
EVA_EXP_KERNEL_INSTANCE(extern, xsimd::fma3<xsimd::avx2>)
EVA_EXP_KERNEL_INSTANCE(extern, xsimd::sse2)
}  // namespace detail
#endif

namespace {

struct ExpRun {  // the functor run_on_best_arch calls with the chosen architecture
    template <class Arch, class... Args>
    void operator()(Arch arch, Args... args) const { detail::expf_kernel<Arch>(arch, args...); }
};

}  // namespace

void exp_each(const float* x, float* y, std::size_t n) {
    static const detail::ExpfTable table;
    detail::run_on_best_arch<ExpRun>(x, y, n, static_cast<const std::uint64_t*>(table.t));
}

}  // namespace eva
