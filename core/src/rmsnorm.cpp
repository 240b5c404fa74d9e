// eva — RMSNorm forward and backward. See rmsnorm.hpp for the math.
#include "eva/rmsnorm.hpp"

#include <cmath>

#include "sum.hpp"

namespace eva {

template <class T>
void rmsnorm_forward(const T* x, std::size_t ldx, const T* w, T* y, std::size_t ldy, T* rstd, std::size_t rows,
                     std::size_t dim) {
    for (std::size_t r = 0; r < rows; ++r) {
        const T* xr = x + r * ldx;
        T* yr = y + r * ldy;
        const T ss = detail::sum8<T>(dim, [&](std::size_t j) { return xr[j] * xr[j]; });
        const T inv = T(1) / std::sqrt(ss / T(dim) + T(kRmsNormEps));
        for (std::size_t j = 0; j < dim; ++j) yr[j] = xr[j] * inv * w[j];
        if (rstd) rstd[r] = inv;
    }
}

template <class T>
void rmsnorm_backward(const T* dy, std::size_t lddy, const T* x, std::size_t ldx, const T* w, const T* rstd,
                      T* dx, std::size_t lddx, T* dw, std::size_t rows, std::size_t dim) {
    for (std::size_t r = 0; r < rows; ++r) {
        const T* dyr = dy + r * lddy;
        const T* xr = x + r * ldx;
        T* dxr = dx + r * lddx;
        const T inv = rstd[r];
        const T gx = detail::sum8<T>(dim, [&](std::size_t j) { return dyr[j] * w[j] * xr[j]; });  // Σ_j (dy_j w_j) x_j
        const T c = inv * inv * inv * gx / T(dim);
        for (std::size_t j = 0; j < dim; ++j) {
            dxr[j] = inv * dyr[j] * w[j] - c * xr[j];
            dw[j] += dyr[j] * xr[j] * inv;
        }
    }
}

template void rmsnorm_forward<float>(const float*, std::size_t, const float*, float*, std::size_t, float*,
                                     std::size_t, std::size_t);
template void rmsnorm_forward<double>(const double*, std::size_t, const double*, double*, std::size_t, double*,
                                      std::size_t, std::size_t);
template void rmsnorm_backward<float>(const float*, std::size_t, const float*, std::size_t, const float*,
                                      const float*, float*, std::size_t, float*, std::size_t, std::size_t);
template void rmsnorm_backward<double>(const double*, std::size_t, const double*, std::size_t, const double*,
                                       const double*, double*, std::size_t, double*, std::size_t, std::size_t);

}  // namespace eva
