// Result<T, E>: a value or an error, shaped like C++23 std::expected (g++ 12 in C++20 mode
// lacks it). Expected failures are values; no exception crosses a component boundary.
#pragma once

#include <string>
#include <type_traits>
#include <utility>
#include <variant>

#include "common/assert.h"

namespace sluice {

// A general error: a numeric code owned by the component that made it, and a message
// for people. Components with their own error enums use Result<T, TheirErrc> instead.
struct Error {
  int code = 0;
  std::string message;
};

template <class E>
class Unexpected {
 public:
  explicit Unexpected(E e) : error_(std::move(e)) {}
  E& error() & { return error_; }
  E&& error() && { return std::move(error_); }

 private:
  E error_;
};

template <class E>
Unexpected<std::decay_t<E>> unexpected(E&& e) {
  return Unexpected<std::decay_t<E>>(std::forward<E>(e));
}

inline Unexpected<Error> error(int code, std::string message) {
  return Unexpected<Error>(Error{code, std::move(message)});
}

template <class T, class E = Error>
class [[nodiscard]] Result {
 public:
  using value_type = T;
  using error_type = E;

  Result() requires std::is_default_constructible_v<T> : v_(std::in_place_index<0>) {}
  Result(const T& value) : v_(std::in_place_index<0>, value) {}        // NOLINT: implicit by design
  Result(T&& value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT
  template <class G>
  Result(Unexpected<G> e) : v_(std::in_place_index<1>, std::move(e).error()) {}  // NOLINT

  bool has_value() const { return v_.index() == 0; }
  explicit operator bool() const { return has_value(); }

  T& value() & {
    SLUICE_ASSERT(has_value());
    return std::get<0>(v_);
  }
  const T& value() const& {
    SLUICE_ASSERT(has_value());
    return std::get<0>(v_);
  }
  T&& value() && {
    SLUICE_ASSERT(has_value());
    return std::move(std::get<0>(v_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const E& error() const& {
    SLUICE_ASSERT(!has_value());
    return std::get<1>(v_);
  }
  E&& error() && {
    SLUICE_ASSERT(!has_value());
    return std::move(std::get<1>(v_));
  }

 private:
  std::variant<T, E> v_;
};

// Result<void, E>: success carries nothing.
template <class E>
class [[nodiscard]] Result<void, E> {
 public:
  Result() = default;
  template <class G>
  Result(Unexpected<G> e) : err_(std::move(e).error()), ok_(false) {}  // NOLINT

  bool has_value() const { return ok_; }
  explicit operator bool() const { return ok_; }
  void value() const { SLUICE_ASSERT(ok_); }
  const E& error() const& {
    SLUICE_ASSERT(!ok_);
    return err_;
  }

 private:
  E err_{};
  bool ok_ = true;
};

using Status = Result<void, Error>;

}  // namespace sluice
