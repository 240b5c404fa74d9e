// eva — typed errors.
//
// Every invalid input (a config field, a tensor shape, a file, an argument) raises one of these with a
// message that names what was wrong and what is allowed. The command line prints `what()` as one line
// and exits with status 2; the library itself never prints and never aborts on bad input.
#pragma once

#include <stdexcept>
#include <string>

namespace eva {

/// Base of every error eva raises on purpose.
struct Error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// A configuration field or argument outside its allowed values.
struct ConfigError : Error {
    using Error::Error;
};

/// Tensor shapes or strides that do not fit together.
struct ShapeError : Error {
    using Error::Error;
};

/// A file that is missing, unreadable, truncated or malformed.
struct FileError : Error {
    using Error::Error;
};

}  // namespace eva
