// Helpers shared by the codec tests: hex text <-> bytes and the committed fixtures.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "common/bytes.h"

namespace sluice::kafka::testing_util {

inline std::string hex(Bytes bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (std::byte b : bytes) {
    out.push_back(kDigits[static_cast<uint8_t>(b) >> 4]);
    out.push_back(kDigits[static_cast<uint8_t>(b) & 15]);
  }
  return out;
}

// Hex digits to bytes; whitespace and '#' comments (to the end of the line) are ignored.
inline std::vector<std::byte> bytes_of(std::string_view text) {
  std::vector<std::byte> out;
  int high = -1;
  bool comment = false;
  for (char c : text) {
    if (c == '\n') comment = false;
    if (comment || c == ' ' || c == '\n' || c == '\t' || c == '\r') continue;
    if (c == '#') {
      comment = true;
      continue;
    }
    const int v = c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
    if (high < 0) {
      high = v;
    } else {
      out.push_back(static_cast<std::byte>(high << 4 | v));
      high = -1;
    }
  }
  return out;
}

// Hex text with spaces and comments, normalised to what hex() prints.
inline std::string hex_text(std::string_view spaced) { return hex(bytes_of(spaced)); }

inline std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The repository root (ctest sets SLUICE_SOURCE_DIR; fall back to the build's idea of it).
inline std::filesystem::path source_dir() {
  const char* env = std::getenv("SLUICE_SOURCE_DIR");
  return env ? std::filesystem::path(env) : std::filesystem::path(".");
}

}  // namespace sluice::kafka::testing_util
