#include "log/format.h"

#include <charconv>
#include <cstdio>
#include <cstring>

#include "common/assert.h"
#include "protocol/crc32c.h"

namespace sluice::log {

void encode_index_entry(std::byte* out, int64_t base_offset, const IndexEntry& entry) {
  SLUICE_ASSERT(entry.offset >= base_offset && entry.offset - base_offset <= kSegmentOffsetSpanMax);
  SLUICE_ASSERT(entry.position < (1ull << 31));
  store_be<uint32_t>(out, static_cast<uint32_t>(entry.offset - base_offset));
  store_be<uint32_t>(out + 4, static_cast<uint32_t>(entry.position));
}

IndexEntry decode_index_entry(const std::byte* in, int64_t base_offset) {
  return {.offset = base_offset + load_be<uint32_t>(in), .position = load_be<uint32_t>(in + 4)};
}

void encode_time_entry(std::byte* out, int64_t base_offset, const TimeEntry& entry) {
  // The sealing entry holds the segment's end, one past its last offset; segments written
  // before appends kept the end within kSegmentOffsetSpanMax may end at span + 1.
  SLUICE_ASSERT(entry.offset >= base_offset &&
                entry.offset - base_offset <= kSegmentOffsetSpanMax + 1);
  store_be<int64_t>(out, entry.timestamp);
  store_be<uint32_t>(out + 8, static_cast<uint32_t>(entry.offset - base_offset));
}

TimeEntry decode_time_entry(const std::byte* in, int64_t base_offset) {
  return {.timestamp = load_be<int64_t>(in), .offset = base_offset + load_be<uint32_t>(in + 8)};
}

std::string segment_file_name(int64_t base_offset, std::string_view suffix) {
  SLUICE_ASSERT(base_offset >= 0);
  char digits[32];
  std::snprintf(digits, sizeof(digits), "%020lld", static_cast<long long>(base_offset));
  return std::string(digits) + std::string(suffix);
}

std::optional<int64_t> parse_segment_file_name(std::string_view name, std::string_view suffix) {
  if (name.size() != kBaseOffsetDigits + suffix.size()) return std::nullopt;
  if (name.substr(kBaseOffsetDigits) != suffix) return std::nullopt;
  int64_t value = 0;
  const char* first = name.data();
  const char* last = name.data() + kBaseOffsetDigits;
  for (const char* p = first; p != last; ++p) {
    if (*p < '0' || *p > '9') return std::nullopt;
  }
  auto [ptr, ec] = std::from_chars(first, last, value);
  if (ec != std::errc() || ptr != last) return std::nullopt;
  return value;
}

void encode_meta(std::byte* out, const Meta& meta) {
  std::memcpy(out, kMetaMagic, sizeof(kMetaMagic));
  store_be<int64_t>(out + 8, meta.log_start_offset);
  store_be<int64_t>(out + 16, meta.recovery_point);
  store_be<uint32_t>(out + 24, kafka::crc32c(Bytes(out, 24)));
}

std::optional<Meta> decode_meta(Bytes bytes) {
  if (bytes.size() < kMetaBytes) return std::nullopt;
  if (std::memcmp(bytes.data(), kMetaMagic, sizeof(kMetaMagic)) != 0) return std::nullopt;
  if (load_be<uint32_t>(bytes.data() + 24) != kafka::crc32c(bytes.first(24))) return std::nullopt;
  return Meta{.log_start_offset = load_be<int64_t>(bytes.data() + 8),
              .recovery_point = load_be<int64_t>(bytes.data() + 16)};
}

}  // namespace sluice::log
