#include "common/json.h"

#include <charconv>
#include <cmath>

#include "common/assert.h"

namespace sluice {

namespace {

template <class T>
void append_number(T n, std::string& out) {
  char buf[32];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, n);
  SLUICE_ASSERT(ec == std::errc());
  out.append(buf, end);
}

}  // namespace

void JsonWriter::escape(std::string_view s, std::string& out) {
  out += '"';
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        // Other control characters as \u00XX; bytes >= 0x80 pass through (names are UTF-8
        // or ASCII; the admin API reports them as they are).
        if (u < 0x20) {
          static constexpr char kHex[] = "0123456789abcdef";
          out += "\\u00";
          out += kHex[u >> 4];
          out += kHex[u & 0xf];
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

void JsonWriter::separate() {
  if (after_key_) {
    after_key_ = false;
    return;
  }
  if (!first_.empty()) {
    if (!first_.back()) out_ += ',';
    first_.back() = false;
  }
}

JsonWriter& JsonWriter::begin_object() {
  separate();
  out_ += '{';
  first_.push_back(true);
  return *this;
}

JsonWriter& JsonWriter::end_object() {
  SLUICE_ASSERT(!first_.empty());
  SLUICE_ASSERT(!after_key_);
  first_.pop_back();
  out_ += '}';
  return *this;
}

JsonWriter& JsonWriter::begin_array() {
  separate();
  out_ += '[';
  first_.push_back(true);
  return *this;
}

JsonWriter& JsonWriter::end_array() {
  SLUICE_ASSERT(!first_.empty());
  first_.pop_back();
  out_ += ']';
  return *this;
}

JsonWriter& JsonWriter::key(std::string_view name) {
  SLUICE_ASSERT(!after_key_);
  separate();
  escape(name, out_);
  out_ += ':';
  after_key_ = true;
  return *this;
}

JsonWriter& JsonWriter::value(std::string_view s) {
  separate();
  escape(s, out_);
  return *this;
}

JsonWriter& JsonWriter::value(int64_t n) {
  separate();
  append_number(n, out_);
  return *this;
}

JsonWriter& JsonWriter::value(uint64_t n) {
  separate();
  append_number(n, out_);
  return *this;
}

JsonWriter& JsonWriter::value(double n) {
  separate();
  if (std::isfinite(n)) {
    append_number(n, out_);
  } else {
    out_ += "null";  // JSON has no NaN or infinity
  }
  return *this;
}

JsonWriter& JsonWriter::value(bool b) {
  separate();
  out_ += b ? "true" : "false";
  return *this;
}

JsonWriter& JsonWriter::null() {
  separate();
  out_ += "null";
  return *this;
}

}  // namespace sluice
