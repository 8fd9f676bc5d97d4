#include "cli/codec.h"

#include <charconv>
#include <ctime>

namespace sluice::cli {

namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int b64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

std::optional<int64_t> parse_int(std::string_view s) {
  int64_t n = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return n;
}

// "90s", "15m", "1h", "2d", "500ms" -> milliseconds.
std::optional<int64_t> parse_duration(std::string_view s) {
  size_t digits = 0;
  while (digits < s.size() && s[digits] >= '0' && s[digits] <= '9') ++digits;
  auto n = parse_int(s.substr(0, digits));
  if (!n || *n > (int64_t{1} << 40)) return std::nullopt;
  std::string_view unit = s.substr(digits);
  if (unit == "ms") return *n;
  if (unit == "s") return *n * 1000;
  if (unit == "m") return *n * 60'000;
  if (unit == "h") return *n * 3'600'000;
  if (unit == "d") return *n * 86'400'000;
  return std::nullopt;
}

}  // namespace

std::string base64_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    uint32_t v = (uint32_t{static_cast<unsigned char>(bytes[i])} << 16) |
                 (uint32_t{static_cast<unsigned char>(bytes[i + 1])} << 8) |
                 static_cast<unsigned char>(bytes[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out += kAlphabet[(v >> s) & 63];
  }
  if (size_t rest = bytes.size() - i; rest > 0) {
    uint32_t v = uint32_t{static_cast<unsigned char>(bytes[i])} << 16;
    if (rest == 2) v |= uint32_t{static_cast<unsigned char>(bytes[i + 1])} << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  while (!text.empty() && text.back() == '=') text.remove_suffix(1);
  if (text.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(text.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    int v = b64_value(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t n;  // continuation bytes
    uint32_t cp;
    if (c < 0x80) {
      n = 0;
      cp = c;
    } else if ((c >> 5) == 6) {
      n = 1;
      cp = c & 0x1f;
    } else if ((c >> 4) == 14) {
      n = 2;
      cp = c & 0x0f;
    } else if ((c >> 3) == 30) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (s.size() - i - 1 < n) return false;
    for (size_t k = 1; k <= n; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc >> 6) != 2) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    // Overlong forms, surrogates, beyond U+10FFFF.
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

namespace {

int hex_value(char h) {
  if (h >= '0' && h <= '9') return h - '0';
  if (h >= 'a' && h <= 'f') return h - 'a' + 10;
  if (h >= 'A' && h <= 'F') return h - 'A' + 10;
  return -1;
}

}  // namespace

std::string unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 == s.size()) {
      out += s[i];
      continue;
    }
    char c = s[++i];
    if (c == 'n') {
      out += '\n';
    } else if (c == 't') {
      out += '\t';
    } else if (c == 'r') {
      out += '\r';
    } else if (c == '0') {
      out += '\0';
    } else if (c == 'x' && s.size() - i > 2 && hex_value(s[i + 1]) >= 0 &&
               hex_value(s[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
      i += 2;
    } else {
      out += c;
    }
  }
  return out;
}

std::optional<int64_t> parse_time(std::string_view text, int64_t now_ms) {
  if (auto n = parse_int(text); n && *n >= 0) return *n;
  if (!text.empty() && text[0] == '-') {
    auto d = parse_duration(text.substr(1));
    if (!d) return std::nullopt;
    return now_ms - *d;
  }
  std::string t(text);
  if (!t.empty() && t.back() == 'Z') t.pop_back();
  std::tm tm{};
  const char* end = strptime(t.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (end == nullptr || *end != '\0') {
    tm = std::tm{};
    end = strptime(t.c_str(), "%Y-%m-%d", &tm);
    if (end == nullptr || *end != '\0') return std::nullopt;
  }
  return static_cast<int64_t>(timegm(&tm)) * 1000;
}

std::optional<StartSpec> parse_start(std::string_view spec, int64_t now_ms) {
  if (spec == "beginning") return StartSpec{StartSpec::kBeginning, 0};
  if (spec == "end") return StartSpec{StartSpec::kEnd, 0};
  if (!spec.empty() && spec[0] == '@') {
    auto t = parse_time(spec.substr(1), now_ms);
    if (!t) return std::nullopt;
    return StartSpec{StartSpec::kTimestamp, *t};
  }
  auto n = parse_int(spec);
  if (!n) return std::nullopt;
  if (*n < 0) return StartSpec{StartSpec::kFromEnd, -*n};
  return StartSpec{StartSpec::kOffset, *n};
}

}  // namespace sluice::cli
