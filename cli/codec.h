// Text helpers of `sluice produce` / `sluice consume`: base64 for binary keys and values,
// UTF-8 checks for JSON output, backslash escapes in delimiters, and start positions
// (kcat's -o: beginning, end, N, -N, @time).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sluice::cli {

std::string base64_encode(std::string_view bytes);
// nullopt when `text` is not standard base64 (padding optional, no whitespace).
std::optional<std::string> base64_decode(std::string_view text);
bool valid_utf8(std::string_view s);
// "\n", "\t", "\r", "\0", "\\" and "\xHH" in `s` replaced by the bytes they name.
std::string unescape(std::string_view s);

// Where consume starts in each partition.
struct StartSpec {
  enum Kind { kBeginning, kEnd, kOffset, kFromEnd, kTimestamp } kind = kBeginning;
  int64_t value = 0;  // the offset, the count back from the end, or a timestamp in ms
};
// "beginning", "end", "N" (offset), "-N" (N before the end), "@MS", "@-1h" (relative to
// `now_ms`, units ms s m h d), "@2026-11-30T20:00:00Z" (UTC; date alone is midnight).
// nullopt when `spec` is none of these.
std::optional<StartSpec> parse_start(std::string_view spec, int64_t now_ms);
// A timestamp: milliseconds, -DURATION before now, or an ISO-8601 UTC date/time.
std::optional<int64_t> parse_time(std::string_view text, int64_t now_ms);

}  // namespace sluice::cli
