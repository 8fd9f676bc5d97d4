// The runtime under the schema-generated Kafka message codec (protocol/messages.h, generated
// from protocol/schema/*.schema by protocol/gen/kafka_codegen.py): a bounds-checked Reader, a
// Writer that produces an EncodedFrame with splice points for zero-copy record bytes, the
// Records value of `records` fields, and DecodeError. Byte grammar: protocol/FORMAT.md and
// kafka-protocol.md section 2.
//
// Decoding never trusts a length: every read checks the bytes left, array counts are capped
// by the bytes their elements need at least, and failures are values (DecodeError names the
// field path and what was wrong). Nothing here throws; allocation is bounded by the input.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "common/assert.h"
#include "common/bytes.h"

namespace sluice::kafka {

enum class DecodeErrc : uint8_t {
  kTruncated,           // the frame ends inside a field
  kBadLength,           // a length or count is negative, too large or longer than the frame
  kBadVarint,           // an unsigned varint is longer than 5 bytes or overflows 32 bits
  kNullNotAllowed,      // null in a field or version that is not nullable
  kUnknownApi,          // api key not in the table of supported APIs
  kUnsupportedVersion,  // version outside the supported range of a known API
};

struct DecodeError {
  DecodeErrc code = DecodeErrc::kTruncated;
  std::string path;     // e.g. "ProduceRequest.topic_data[0].partition_data[2].records"
  std::string message;  // what was wrong, e.g. "need 4 bytes, 1 left"
  std::string to_string() const { return path + ": " + message; }
};

struct Uuid {
  std::array<std::byte, 16> bytes{};
  bool operator==(const Uuid&) const = default;
};

// Record bytes the sender writes itself (sendfile / splice from a segment file). The codec
// writes only their length prefix; the fields are opaque to it and echoed in a Splice.
struct ExternalBytes {
  int fd = -1;
  int64_t offset = 0;   // position in the file
  uint32_t length = 0;  // bytes to send
  uint64_t cookie = 0;  // free for the owner (e.g. a segment pin id)
  bool operator==(const ExternalBytes&) const = default;
};

// The value of a `records` field: null, borrowed bytes, or external bytes.
// Decoding yields borrowed views into the frame (zero-copy: valid while the frame is).
// Encoding copies borrowed bytes inline and turns external bytes into a Splice.
class Records {
 public:
  Records() = default;  // null
  static Records borrowed(Bytes bytes) {
    Records r;
    r.kind_ = Kind::kBorrowed;
    r.bytes_ = bytes;
    return r;
  }
  static Records external(const ExternalBytes& ref) {
    Records r;
    r.kind_ = Kind::kExternal;
    r.external_ = ref;
    return r;
  }
  bool is_null() const { return kind_ == Kind::kNull; }
  bool is_external() const { return kind_ == Kind::kExternal; }
  // The bytes of a borrowed value; empty for null. Not for external values.
  Bytes bytes() const {
    SLUICE_ASSERT(kind_ != Kind::kExternal);
    return bytes_;
  }
  const ExternalBytes& external_ref() const {
    SLUICE_ASSERT(kind_ == Kind::kExternal);
    return external_;
  }
  size_t size() const { return kind_ == Kind::kExternal ? external_.length : bytes_.size(); }
  // Borrowed values compare by content, external ones by reference.
  friend bool operator==(const Records& a, const Records& b);

 private:
  enum class Kind : uint8_t { kNull, kBorrowed, kExternal };
  Kind kind_ = Kind::kNull;
  Bytes bytes_;
  ExternalBytes external_;
};

// "At `position` in EncodedFrame::bytes, the sender inserts `source.length` bytes of `source`."
struct Splice {
  size_t position = 0;
  ExternalBytes source;
};

// An encoded message or frame. Send bytes[0, splices[0].position), then splices[0]'s external
// bytes, then bytes up to the next splice, and so on. Positions ascend; several splices may
// share a position. A frame's size prefix already counts the spliced bytes.
struct EncodedFrame {
  std::vector<std::byte> bytes;
  std::vector<Splice> splices;
  size_t size() const;  // bytes.size() + every splice's length
  // Concatenates everything into one buffer, with `read_external` supplying spliced bytes
  // (tests and small tools; the broker uses sendfile instead).
  template <class ReadExternal>
  std::vector<std::byte> flatten(ReadExternal&& read_external) const {
    std::vector<std::byte> out;
    out.reserve(size());
    size_t at = 0;
    for (const Splice& s : splices) {
      out.insert(out.end(), bytes.begin() + at, bytes.begin() + s.position);
      read_external(s.source, out);
      at = s.position;
    }
    out.insert(out.end(), bytes.begin() + at, bytes.end());
    return out;
  }
};

// Appends Kafka primitives to a growing buffer. `flexible` selects compact strings, bytes
// and arrays (and tag sections, written by the generated code).
class Writer {
 public:
  Writer() = default;
  explicit Writer(bool flexible) : flexible_(flexible) {}
  bool flexible() const { return flexible_; }
  void set_flexible(bool flexible) { flexible_ = flexible; }

  void i8(int8_t v) { raw_be(v); }
  void i16(int16_t v) { raw_be(v); }
  void i32(int32_t v) { raw_be(v); }
  void i64(int64_t v) { raw_be(v); }
  void u16(uint16_t v) { raw_be(v); }
  void u32(uint32_t v) { raw_be(v); }
  void f64(double v);
  void boolean(bool v) { raw_be(static_cast<uint8_t>(v ? 1 : 0)); }
  void uuid(const Uuid& v) { append(Bytes(v.bytes)); }
  void uvarint(uint32_t v);

  void string(std::string_view s);                                   // compact in flexible mode
  void nullable_string(const std::optional<std::string>& s);         // null: -1 / 0
  void legacy_nullable_string(const std::optional<std::string>& s);  // int16 length always
  void bytes(Bytes b);
  void null_bytes();
  void records(const Records& r);
  void array_count(size_t n);  // count or count+1
  void null_array();           // -1 or 0
  void empty_tags() { uvarint(0); }
  // One tagged field: `write_value` encodes the value into a scratch writer (flexible).
  template <class F>
  void tagged(uint32_t tag, F&& write_value) {
    Writer value(true);
    write_value(value);
    SLUICE_ASSERT(value.splices_.empty());  // no `records` inside tag sections
    uvarint(tag);
    uvarint(static_cast<uint32_t>(value.buf_.size()));
    append(value.buf_);
  }

  void append(Bytes b) { buf_.insert(buf_.end(), b.begin(), b.end()); }
  size_t position() const { return buf_.size(); }
  void patch_i32(size_t position, int32_t v);
  std::vector<std::byte>& buffer() { return buf_; }
  EncodedFrame finish() && { return EncodedFrame{std::move(buf_), std::move(splices_)}; }
  size_t spliced_bytes() const { return spliced_bytes_; }

 private:
  template <class T>
  void raw_be(T v) {
    const size_t at = buf_.size();
    buf_.resize(at + sizeof(T));
    store_be(buf_.data() + at, v);
  }
  void length_prefix(size_t n);  // int32 (classic) or uvarint n+1 (compact)

  std::vector<std::byte> buf_;
  std::vector<Splice> splices_;
  size_t spliced_bytes_ = 0;
  bool flexible_ = false;
};

// Reads Kafka primitives from a byte span. Every method returns false after recording a
// DecodeError (see error()); callers stop at the first failure and add their path prefix.
// Array elements one request may hold (all its arrays together). Real clients send far fewer
// (a Fetch or Metadata naming thousands of partitions or topics); a frame of two-byte empty
// elements would otherwise decode to ~30x its size, and its response as much again.
inline constexpr size_t kRequestArrayElementsMax = 100'000;

class Reader {
 public:
  explicit Reader(Bytes bytes, bool flexible = false) : bytes_(bytes), flexible_(flexible) {}
  // At most `n` array elements in everything this reader (and its tag sections) decodes.
  // decode_request() sets kRequestArrayElementsMax: decoded structs are up to ~30x larger
  // than their wire bytes, so the element count, not the frame size, bounds their memory.
  void limit_array_elements(size_t n) { elements_left_ = n; }
  bool flexible() const { return flexible_; }
  void set_flexible(bool flexible) { flexible_ = flexible; }
  size_t remaining() const { return bytes_.size() - pos_; }
  size_t position() const { return pos_; }
  Bytes rest() const { return bytes_.subspan(pos_); }

  bool i8(int8_t& v, const char* field) { return raw_be(v, field); }
  bool i16(int16_t& v, const char* field) { return raw_be(v, field); }
  bool i32(int32_t& v, const char* field) { return raw_be(v, field); }
  bool i64(int64_t& v, const char* field) { return raw_be(v, field); }
  bool u16(uint16_t& v, const char* field) { return raw_be(v, field); }
  bool u32(uint32_t& v, const char* field) { return raw_be(v, field); }
  bool f64(double& v, const char* field);
  bool boolean(bool& v, const char* field);
  bool uuid(Uuid& v, const char* field);
  bool uvarint(uint32_t& v, const char* field);

  bool string(std::string& s, const char* field);
  bool nullable_string(std::optional<std::string>& s, bool nullable, const char* field);
  bool legacy_nullable_string(std::optional<std::string>& s, const char* field);
  bool bytes(std::vector<std::byte>& b, const char* field);
  bool nullable_bytes(std::optional<std::vector<std::byte>>& b, bool nullable, const char* field);
  bool records(Records& r, bool nullable, const char* field);
  // Array count; nullopt-and-true means null. `min_element_bytes` caps the count.
  bool array_count(std::optional<uint32_t>& n, size_t min_element_bytes, const char* field);
  // A tag section: `on_tag(tag, Reader& value)` decodes known tags from a reader bounded to
  // the value's bytes and returns false on failure; unknown tags are skipped by the caller
  // returning true without reading.
  template <class F>
  bool tags(F&& on_tag, const char* where) {
    uint32_t count = 0;
    if (!uvarint(count, where)) return false;
    for (uint32_t i = 0; i < count; ++i) {
      uint32_t tag = 0;
      uint32_t size = 0;
      if (!uvarint(tag, where) || !uvarint(size, where)) return false;
      if (size > remaining()) return fail(DecodeErrc::kBadLength, where, too_long(size));
      Reader value(bytes_.subspan(pos_, size), true);
      value.elements_left_ = elements_left_;
      if (!on_tag(tag, value)) {
        error_ = std::move(value.error_);
        return false;
      }
      elements_left_ = value.elements_left_;
      pos_ += size;
    }
    return true;
  }
  bool skip_tags(const char* where) {
    return tags([](uint32_t, Reader&) { return true; }, where);
  }

  bool fail(DecodeErrc code, std::string_view field, std::string message);
  // Prefixes the error path with "<prefix>." (called while unwinding a failure).
  void prefix_path(std::string_view prefix);
  const DecodeError& error() const { return error_; }
  DecodeError take_error() { return std::move(error_); }

 private:
  template <class T>
  bool raw_be(T& v, const char* field) {
    if (remaining() < sizeof(T)) return truncated(sizeof(T), field);
    v = load_be<T>(bytes_.data() + pos_);
    pos_ += sizeof(T);
    return true;
  }
  bool truncated(size_t need, const char* field);
  std::string too_long(size_t n) const;
  // Reads a string/bytes length: -1 (classic) or 0 (compact) is null -> nullopt.
  bool length(std::optional<uint32_t>& n, bool int16_length, const char* field);
  // Shared by length() and array_count(): `element_bytes` 0 for strings and bytes.
  bool counted(std::optional<uint32_t>& n, bool int16_length, size_t element_bytes,
               const char* field);

  Bytes bytes_;
  size_t pos_ = 0;
  bool flexible_ = false;
  size_t elements_left_ = SIZE_MAX;
  DecodeError error_;
};

namespace detail {

// Per-type encode/decode used by the generated code. `nullable` says whether null is allowed
// in this version (null written in a non-nullable version becomes empty).
template <class T>
inline constexpr bool kIsStruct = requires(T t, Writer& w) {
  t.write_fields(w, int16_t{0});
};

template <class T>
size_t min_bytes(int16_t version, bool flexible) {
  if constexpr (kIsStruct<T>) {
    return T::min_wire_bytes(version, flexible);
  } else if constexpr (std::is_arithmetic_v<T>) {
    return sizeof(T);
  } else if constexpr (std::is_same_v<T, Uuid>) {
    return 16;
  } else {
    return flexible ? 1 : 2;
  }
}

inline void put(Writer& w, int8_t v, int16_t) { w.i8(v); }
inline void put(Writer& w, int16_t v, int16_t) { w.i16(v); }
inline void put(Writer& w, int32_t v, int16_t) { w.i32(v); }
inline void put(Writer& w, int64_t v, int16_t) { w.i64(v); }
inline void put(Writer& w, uint16_t v, int16_t) { w.u16(v); }
inline void put(Writer& w, uint32_t v, int16_t) { w.u32(v); }
inline void put(Writer& w, double v, int16_t) { w.f64(v); }
inline void put(Writer& w, bool v, int16_t) { w.boolean(v); }
inline void put(Writer& w, const Uuid& v, int16_t) { w.uuid(v); }
inline void put(Writer& w, const std::string& v, int16_t) { w.string(v); }
inline void put(Writer& w, const std::vector<std::byte>& v, int16_t) { w.bytes(v); }
template <class T>
requires kIsStruct<T>
void put(Writer& w, const T& v, int16_t version) { v.write_fields(w, version); }
template <class T>
void put(Writer& w, const std::vector<T>& v, int16_t version) {
  w.array_count(v.size());
  for (const T& e : v) put(w, e, version);
}

// Nullable-capable fields: optional strings, bytes and arrays, and Records.
inline void put_nullable(Writer& w, const std::optional<std::string>& v, bool nullable) {
  if (!v && nullable) return w.nullable_string(v);
  w.string(v ? std::string_view(*v) : std::string_view());
}
inline void put_nullable(Writer& w, const std::optional<std::vector<std::byte>>& v, bool nullable) {
  if (!v && nullable) return w.null_bytes();
  w.bytes(v ? Bytes(*v) : Bytes());
}
template <class T>
void put_nullable(Writer& w, const std::optional<std::vector<T>>& v, bool nullable,
                  int16_t version) {
  if (!v && nullable) return w.null_array();
  if (!v) return w.array_count(0);
  put(w, *v, version);
}
inline void put_nullable(Writer& w, const Records& v, bool nullable) {
  if (v.is_null() && !nullable) return w.records(Records::borrowed({}));
  w.records(v);
}

inline bool get(Reader& r, int8_t& v, int16_t, const char* f) { return r.i8(v, f); }
inline bool get(Reader& r, int16_t& v, int16_t, const char* f) { return r.i16(v, f); }
inline bool get(Reader& r, int32_t& v, int16_t, const char* f) { return r.i32(v, f); }
inline bool get(Reader& r, int64_t& v, int16_t, const char* f) { return r.i64(v, f); }
inline bool get(Reader& r, uint16_t& v, int16_t, const char* f) { return r.u16(v, f); }
inline bool get(Reader& r, uint32_t& v, int16_t, const char* f) { return r.u32(v, f); }
inline bool get(Reader& r, double& v, int16_t, const char* f) { return r.f64(v, f); }
inline bool get(Reader& r, bool& v, int16_t, const char* f) { return r.boolean(v, f); }
inline bool get(Reader& r, Uuid& v, int16_t, const char* f) { return r.uuid(v, f); }
inline bool get(Reader& r, std::string& v, int16_t, const char* f) { return r.string(v, f); }
inline bool get(Reader& r, std::vector<std::byte>& v, int16_t, const char* f) {
  return r.bytes(v, f);
}
template <class T>
requires kIsStruct<T>
bool get(Reader& r, T& v, int16_t version, const char* f) {
  if (v.read_fields(r, version)) return true;
  r.prefix_path(f);
  return false;
}
bool prefix_element(Reader& r, const char* field, size_t index);  // always false

template <class T>
bool get_elements(Reader& r, std::vector<T>& v, uint32_t n, int16_t version, const char* f) {
  v.clear();
  v.reserve(n);  // n is capped by the bytes left (array_count)
  for (uint32_t i = 0; i < n; ++i) {
    T& e = v.emplace_back();
    if constexpr (kIsStruct<T>) {
      if (!e.read_fields(r, version)) return prefix_element(r, f, i);
    } else {
      if (!get(r, e, version, "")) return prefix_element(r, f, i);
    }
  }
  return true;
}
template <class T>
bool get(Reader& r, std::vector<T>& v, int16_t version, const char* f) {
  std::optional<uint32_t> n;
  if (!r.array_count(n, min_bytes<T>(version, r.flexible()), f)) return false;
  if (!n) return r.fail(DecodeErrc::kNullNotAllowed, f, "null array in a non-nullable field");
  return get_elements(r, v, *n, version, f);
}

inline bool get_nullable(Reader& r, std::optional<std::string>& v, bool nullable, const char* f) {
  return r.nullable_string(v, nullable, f);
}
inline bool get_nullable(Reader& r, std::optional<std::vector<std::byte>>& v, bool nullable,
                         const char* f) {
  return r.nullable_bytes(v, nullable, f);
}
inline bool get_nullable(Reader& r, Records& v, bool nullable, const char* f) {
  return r.records(v, nullable, f);
}
template <class T>
bool get_nullable(Reader& r, std::optional<std::vector<T>>& v, bool nullable, int16_t version,
                  const char* f) {
  std::optional<uint32_t> n;
  if (!r.array_count(n, min_bytes<T>(version, r.flexible()), f)) return false;
  if (!n) {
    if (!nullable) {
      return r.fail(DecodeErrc::kNullNotAllowed, f, "null array in a non-nullable version");
    }
    v.reset();
    return true;
  }
  return get_elements(r, v.emplace(), *n, version, f);
}

}  // namespace detail
}  // namespace sluice::kafka
