// Fuzzes the CLI's text parsers: start offsets and times (-o, --from), base64, UTF-8 checks
// and backslash escapes. Checks round trips where they must hold.
#include <cstddef>
#include <cstdint>
#include <string>

#include "cli/codec.h"
#include "common/assert.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  (void)sluice::cli::parse_start(text, 1'700'000'000'000);
  (void)sluice::cli::parse_time(text, 1'700'000'000'000);
  (void)sluice::cli::valid_utf8(text);
  (void)sluice::cli::unescape(text);
  SLUICE_ASSERT(sluice::cli::base64_decode(sluice::cli::base64_encode(text)) == text);
  if (auto d = sluice::cli::base64_decode(text)) {
    (void)sluice::cli::base64_encode(*d);
  }
  return 0;
}
