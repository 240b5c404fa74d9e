// eva — temporaries that their user overwrites completely before reading them.
#pragma once

#include <cstddef>
#include <memory>

namespace eva::detail {

/// n values left uninitialised. std::vector<T>(n) would first write zeros over them: a whole extra pass
/// over memory, and a training step's temporaries are tens of MB.
template <class T>
std::unique_ptr<T[]> scratch(std::size_t n) {
    return std::unique_ptr<T[]>(new T[n]);
}

}  // namespace eva::detail
