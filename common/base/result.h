// Result<T>: the error convention of every layer of Trellis. Functions that can
// fail return a Result; nothing on the data path throws. The error carries a
// message meant for a human (path-qualified where the input is structured) and
// an optional numeric code whose meaning belongs to the layer that set it
// (errno for sockets, an HTTP status for codecs, ...).
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace trellis {

struct Error {
  std::string message;
  int code = 0;
};

inline Error make_error(std::string message, int code = 0) {
  return Error{std::move(message), code};
}

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & {
    assert(ok());
    return std::get<0>(v_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<0>(v_);
  }
  T&& value() && {
    assert(ok());
    return std::get<0>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error& error() const& {
    assert(!ok());
    return std::get<1>(v_);
  }
  Error&& error() && {
    assert(!ok());
    return std::get<1>(std::move(v_));
  }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const& {
    assert(!ok_);
    return error_;
  }
  Error&& error() && {
    assert(!ok_);
    return std::move(error_);
  }

 private:
  Error error_;
  bool ok_ = true;
};

using Status = Result<void>;

inline Status ok_status() { return Status(); }

}  // namespace trellis

#define TRELLIS_CONCAT_INNER(a, b) a##b
#define TRELLIS_CONCAT(a, b) TRELLIS_CONCAT_INNER(a, b)

// Evaluates a Result; on error returns the error from the enclosing function,
// otherwise assigns (or declares) `lhs` with its value:
//   ASSIGN_OR_RETURN(auto port, parse_port(text));
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL(TRELLIS_CONCAT(result_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr)   \
  auto tmp = (expr);                            \
  if (!tmp.ok()) return std::move(tmp).error(); \
  lhs = std::move(tmp).value()

// Evaluates a Status (or Result); on error returns the error.
#define RETURN_IF_ERROR(expr)                              \
  do {                                                     \
    auto status_ = (expr);                                 \
    if (!status_.ok()) return std::move(status_).error();  \
  } while (0)
