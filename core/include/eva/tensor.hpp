// eva — tensor conventions.
//
// Storage is xtensor, row-major, float32 by default (double in gradient checks). Activations are
// `[tokens, features]`; a batch is B sequences of T tokens flattened to `[B*T, features]`. A Linear
// weight is `[out, in]` and computes y = x·Wᵀ, exactly PyTorch's (and DeepSeek-V3's) layout, so
// checkpoints map one to one onto the official tensor names.
#pragma once

#include <cstddef>
#include <memory>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include <xtensor/xtensor.hpp>

#include "eva/error.hpp"

namespace eva {

template <class T = float>
using Vector = xt::xtensor<T, 1>;
template <class T = float>
using Matrix = xt::xtensor<T, 2>;
template <class T = float>
using Tensor3 = xt::xtensor<T, 3>;

/// std::allocator, except that value-initialisation (what vector::resize(n) does to new elements)
/// leaves the elements uninitialised.
template <class T>
struct UninitializedAllocator : std::allocator<T> {
    template <class U>
    struct rebind {
        using other = UninitializedAllocator<U>;
    };
    using std::allocator<T>::allocator;
    template <class U>
    void construct(U* p) noexcept {
        ::new (static_cast<void*>(p)) U;
    }
    template <class U, class... Args>
    void construct(U* p, Args&&... args) {
        ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
    }
};

/// A vector for buffers that every use overwrites in full, such as a layer's cached activations: growing
/// it does not first write zeros over the new elements. (A routed expert's cache grows and shrinks with
/// its token count from step to step, and those zeros cost 1.7% of a training step.)
template <class T>
using Buffer = std::vector<T, UninitializedAllocator<T>>;

/// Throws ShapeError unless `t` has exactly `expected` as shape; `name` goes into the message.
template <class E, class S>
void require_shape(const E& t, const S& expected, const std::string& name) {
    const auto& s = t.shape();
    bool ok = s.size() == expected.size();
    for (std::size_t i = 0; ok && i < s.size(); ++i) ok = s[i] == expected[i];
    if (ok) return;
    auto show = [](const auto& v) {
        std::string r = "[";
        for (std::size_t i = 0; i < v.size(); ++i) r += (i ? ", " : "") + std::to_string(v[i]);
        return r + "]";
    };
    throw ShapeError(name + ": expected shape " + show(expected) + ", got " + show(s));
}

}  // namespace eva
