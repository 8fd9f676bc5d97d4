#include "protocol/codec.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>

#include "protocol/varint.h"

namespace sluice::kafka {

bool operator==(const Records& a, const Records& b) {
  if (a.kind_ != b.kind_) return false;
  switch (a.kind_) {
    case Records::Kind::kNull:
      return true;
    case Records::Kind::kBorrowed:
      return a.bytes_.size() == b.bytes_.size() &&
             (a.bytes_.empty() ||
              std::memcmp(a.bytes_.data(), b.bytes_.data(), a.bytes_.size()) == 0);
    case Records::Kind::kExternal:
      return a.external_ == b.external_;
  }
  SLUICE_UNREACHABLE();
}

size_t EncodedFrame::size() const {
  size_t n = bytes.size();
  for (const Splice& s : splices) n += s.source.length;
  return n;
}

// ---- Writer ----

void Writer::f64(double v) { raw_be(std::bit_cast<uint64_t>(v)); }

void Writer::uvarint(uint32_t v) {
  std::byte tmp[kVarint64BytesMax];
  const size_t n = write_uvarint(tmp, v);
  append(Bytes(tmp, n));
}

void Writer::length_prefix(size_t n) {
  SLUICE_ASSERT(n < static_cast<size_t>(std::numeric_limits<int32_t>::max()));
  if (flexible_) {
    uvarint(static_cast<uint32_t>(n + 1));
  } else {
    i32(static_cast<int32_t>(n));
  }
}

void Writer::string(std::string_view s) {
  if (flexible_) {
    SLUICE_ASSERT(s.size() < static_cast<size_t>(std::numeric_limits<int32_t>::max()));
    uvarint(static_cast<uint32_t>(s.size() + 1));
  } else {
    SLUICE_ASSERT(s.size() <= static_cast<size_t>(std::numeric_limits<int16_t>::max()));
    i16(static_cast<int16_t>(s.size()));
  }
  append(as_bytes(s));
}

void Writer::nullable_string(const std::optional<std::string>& s) {
  if (s) return string(*s);
  if (flexible_) {
    uvarint(0);
  } else {
    i16(-1);
  }
}

void Writer::legacy_nullable_string(const std::optional<std::string>& s) {
  if (!s) return i16(-1);
  SLUICE_ASSERT(s->size() <= static_cast<size_t>(std::numeric_limits<int16_t>::max()));
  i16(static_cast<int16_t>(s->size()));
  append(as_bytes(*s));
}

void Writer::bytes(Bytes b) {
  length_prefix(b.size());
  append(b);
}

void Writer::null_bytes() {
  if (flexible_) {
    uvarint(0);
  } else {
    i32(-1);
  }
}

void Writer::records(const Records& r) {
  if (r.is_null()) return null_bytes();
  if (!r.is_external()) return bytes(r.bytes());
  const ExternalBytes& ref = r.external_ref();
  length_prefix(ref.length);
  splices_.push_back(Splice{.position = buf_.size(), .source = ref});
  spliced_bytes_ += ref.length;
}

void Writer::array_count(size_t n) { length_prefix(n); }

void Writer::null_array() { null_bytes(); }

void Writer::patch_i32(size_t position, int32_t v) {
  SLUICE_ASSERT(position + 4 <= buf_.size());
  store_be(buf_.data() + position, v);
}

// ---- Reader ----

bool Reader::fail(DecodeErrc code, std::string_view field, std::string message) {
  error_.code = code;
  error_.path = std::string(field);
  error_.message = std::move(message);
  return false;
}

void Reader::prefix_path(std::string_view prefix) {
  if (error_.path.empty()) {
    error_.path = std::string(prefix);
  } else {
    error_.path = std::string(prefix) + "." + error_.path;
  }
}

bool Reader::truncated(size_t need, const char* field) {
  return fail(DecodeErrc::kTruncated, field,
              "need " + std::to_string(need) + " bytes, " + std::to_string(remaining()) + " left");
}

std::string Reader::too_long(size_t n) const {
  return "length " + std::to_string(n) + " exceeds the " + std::to_string(remaining()) +
         " bytes left";
}

bool Reader::f64(double& v, const char* field) {
  uint64_t bits = 0;
  if (!raw_be(bits, field)) return false;
  v = std::bit_cast<double>(bits);
  return true;
}

bool Reader::boolean(bool& v, const char* field) {
  uint8_t b = 0;
  if (!raw_be(b, field)) return false;
  v = b != 0;
  return true;
}

bool Reader::uuid(Uuid& v, const char* field) {
  if (remaining() < v.bytes.size()) return truncated(v.bytes.size(), field);
  std::memcpy(v.bytes.data(), bytes_.data() + pos_, v.bytes.size());
  pos_ += v.bytes.size();
  return true;
}

bool Reader::uvarint(uint32_t& v, const char* field) {
  auto d = read_uvarint32(rest());
  if (!d) {
    // Either the frame ends inside the varint (every byte left continues it) or it is bad.
    const size_t n = std::min(remaining(), kVarint32BytesMax);
    bool continues = true;
    for (size_t i = 0; i < n; ++i) continues &= (static_cast<uint8_t>(rest()[i]) & 0x80) != 0;
    if (n < kVarint32BytesMax && continues) return truncated(n + 1, field);
    return fail(DecodeErrc::kBadVarint, field, "unsigned varint longer than 5 bytes or >= 2^32");
  }
  v = d->value;
  pos_ += d->size;
  return true;
}

bool Reader::length(std::optional<uint32_t>& n, bool int16_length, const char* field) {
  return counted(n, int16_length, 0, field);
}

bool Reader::counted(std::optional<uint32_t>& n, bool int16_length, size_t element_bytes,
                     const char* field) {
  int64_t len = 0;
  if (flexible_ && !int16_length) {
    uint32_t u = 0;
    if (!uvarint(u, field)) return false;
    len = static_cast<int64_t>(u) - 1;
  } else if (int16_length) {
    int16_t s = 0;
    if (!i16(s, field)) return false;
    len = s;
  } else {
    int32_t s = 0;
    if (!i32(s, field)) return false;
    len = s;
  }
  if (len == -1) {
    n.reset();
    return true;
  }
  if (len < -1) {
    return fail(DecodeErrc::kBadLength, field, "negative length " + std::to_string(len));
  }
  // Arrays: every element takes at least `element_bytes` (0 for strings and bytes: 1 each).
  const uint64_t need = static_cast<uint64_t>(len) * std::max<size_t>(element_bytes, 1);
  if (need > remaining()) {
    if (element_bytes == 0) {
      return fail(DecodeErrc::kBadLength, field, too_long(static_cast<size_t>(len)));
    }
    return fail(DecodeErrc::kBadLength, field,
                "array of " + std::to_string(len) + " elements needs at least " +
                    std::to_string(need) + " bytes, " + std::to_string(remaining()) + " left");
  }
  if (element_bytes > 0) {  // an array
    if (static_cast<uint64_t>(len) > elements_left_) {
      return fail(DecodeErrc::kBadLength, field,
                  "array of " + std::to_string(len) + " elements passes the limit of " +
                      std::to_string(kRequestArrayElementsMax) + " in one request");
    }
    elements_left_ -= static_cast<size_t>(len);
  }
  n = static_cast<uint32_t>(len);
  return true;
}

bool Reader::string(std::string& s, const char* field) {
  std::optional<std::string> v;
  if (!nullable_string(v, false, field)) return false;
  s = std::move(*v);
  return true;
}

bool Reader::nullable_string(std::optional<std::string>& s, bool nullable, const char* field) {
  std::optional<uint32_t> n;
  if (!length(n, !flexible_, field)) return false;
  if (!n) {
    if (!nullable) return fail(DecodeErrc::kNullNotAllowed, field, "null string");
    s.reset();
    return true;
  }
  s.emplace(reinterpret_cast<const char*>(bytes_.data() + pos_), *n);
  pos_ += *n;
  return true;
}

bool Reader::legacy_nullable_string(std::optional<std::string>& s, const char* field) {
  const bool was_flexible = flexible_;
  flexible_ = false;
  const bool ok = nullable_string(s, true, field);
  flexible_ = was_flexible;
  return ok;
}

bool Reader::bytes(std::vector<std::byte>& b, const char* field) {
  std::optional<std::vector<std::byte>> v;
  if (!nullable_bytes(v, false, field)) return false;
  b = std::move(*v);
  return true;
}

bool Reader::nullable_bytes(std::optional<std::vector<std::byte>>& b, bool nullable,
                            const char* field) {
  Records view;
  if (!records(view, nullable, field)) return false;
  if (view.is_null()) {
    b.reset();
  } else {
    b.emplace(view.bytes().begin(), view.bytes().end());
  }
  return true;
}

bool Reader::records(Records& r, bool nullable, const char* field) {
  std::optional<uint32_t> n;
  if (!length(n, false, field)) return false;
  if (!n) {
    if (!nullable) return fail(DecodeErrc::kNullNotAllowed, field, "null bytes");
    r = Records();
    return true;
  }
  r = Records::borrowed(bytes_.subspan(pos_, *n));
  pos_ += *n;
  return true;
}

bool Reader::array_count(std::optional<uint32_t>& n, size_t min_element_bytes, const char* field) {
  return counted(n, false, std::max<size_t>(min_element_bytes, 1), field);
}

namespace detail {

bool prefix_element(Reader& r, const char* field, size_t index) {
  r.prefix_path(std::string(field) + "[" + std::to_string(index) + "]");
  return false;
}

}  // namespace detail
}  // namespace sluice::kafka
