// Errors raised by the core. The bindings translate them: InvalidArgument -> ValueError,
// TypeMismatch -> TypeError, everything else (std::runtime_error, CudaError) -> RuntimeError.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace dalcore {

struct InvalidArgument : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

struct TypeMismatch : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

struct CudaError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

namespace detail {
template <class... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  return os.str();
}
}  // namespace detail

// require(cond, "argument", " must be ...") throws InvalidArgument("argument must be ...").
template <class... Parts>
inline void require(bool cond, const Parts&... parts) {
  if (!cond) throw InvalidArgument(detail::concat(parts...));
}

}  // namespace dalcore
