// Kafka's variable-length integers: unsigned varint (LEB128, as in protobuf) and the ZigZag
// varint/varlong of record batches. Decoders are bounds-checked and reject over-long encodings.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "common/bytes.h"

namespace sluice::kafka {

inline constexpr size_t kVarint32BytesMax = 5;
inline constexpr size_t kVarint64BytesMax = 10;

// A decoded value and how many bytes it took.
template <class T>
struct Decoded {
  T value;
  size_t size;
};

// Reads an unsigned varint of at most `max_bytes` bytes from the start of `in`.
// nullopt when `in` ends first or the encoding is longer than `max_bytes` or overflows.
inline std::optional<Decoded<uint64_t>> read_uvarint(Bytes in, size_t max_bytes) {
  uint64_t v = 0;
  const size_t n = in.size() < max_bytes ? in.size() : max_bytes;
  for (size_t i = 0; i < n; ++i) {
    const auto b = static_cast<uint8_t>(in[i]);
    if (i == 9 && b > 1) return std::nullopt;  // bits beyond 64
    v |= static_cast<uint64_t>(b & 0x7f) << (7 * i);
    if ((b & 0x80) == 0) return Decoded<uint64_t>{v, i + 1};
  }
  return std::nullopt;
}

inline std::optional<Decoded<uint32_t>> read_uvarint32(Bytes in) {
  auto d = read_uvarint(in, kVarint32BytesMax);
  if (!d || d->value > UINT32_MAX) return std::nullopt;
  return Decoded<uint32_t>{static_cast<uint32_t>(d->value), d->size};
}

inline std::optional<Decoded<int32_t>> read_varint(Bytes in) {
  auto d = read_uvarint32(in);
  if (!d) return std::nullopt;
  const uint32_t u = d->value;
  return Decoded<int32_t>{static_cast<int32_t>((u >> 1) ^ (~(u & 1) + 1)), d->size};
}

inline std::optional<Decoded<int64_t>> read_varlong(Bytes in) {
  auto d = read_uvarint(in, kVarint64BytesMax);
  if (!d) return std::nullopt;
  const uint64_t u = d->value;
  return Decoded<int64_t>{static_cast<int64_t>((u >> 1) ^ (~(u & 1) + 1)), d->size};
}

inline size_t uvarint_size(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

inline uint64_t zigzag64(int64_t v) {
  return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
}
inline uint32_t zigzag32(int32_t v) {
  return (static_cast<uint32_t>(v) << 1) ^ static_cast<uint32_t>(v >> 31);
}

// Writes an unsigned varint at `out` (room for kVarint64BytesMax bytes); returns bytes written.
inline size_t write_uvarint(std::byte* out, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    out[n++] = static_cast<std::byte>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  out[n++] = static_cast<std::byte>(v);
  return n;
}

}  // namespace sluice::kafka
