// Byte helpers: big-endian loads and stores (Kafka's wire order), and byte-span views.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

namespace sluice {

using Bytes = std::span<const std::byte>;
using MutableBytes = std::span<std::byte>;

template <class T>
inline T load_be(const std::byte* p) {
  static_assert(std::is_integral_v<T>);
  T v;
  std::memcpy(&v, p, sizeof(T));
  if constexpr (std::endian::native == std::endian::little && sizeof(T) > 1) {
    using U = std::make_unsigned_t<T>;
    v = static_cast<T>(__builtin_bswap64(static_cast<uint64_t>(static_cast<U>(v))) >>
                       (64 - 8 * sizeof(T)));
  }
  return v;
}

template <class T>
inline void store_be(std::byte* p, T v) {
  static_assert(std::is_integral_v<T>);
  if constexpr (std::endian::native == std::endian::little && sizeof(T) > 1) {
    using U = std::make_unsigned_t<T>;
    v = static_cast<T>(__builtin_bswap64(static_cast<uint64_t>(static_cast<U>(v))) >>
                       (64 - 8 * sizeof(T)));
  }
  std::memcpy(p, &v, sizeof(T));
}

inline Bytes as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}
inline std::string_view as_string_view(Bytes b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

}  // namespace sluice
