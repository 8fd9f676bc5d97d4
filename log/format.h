// What the writer and the reader of a partition directory must agree on. The byte grammar
// is in FORMAT.md; this header pins it in code.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/bytes.h"
#include "protocol/record_batch.h"

namespace sluice::log {

using kafka::kBatchHeaderBytes;
using kafka::kBatchLogOverheadBytes;

// A batch is never larger than this (the broker's max message size must stay below it).
inline constexpr uint64_t kBatchBytesMax = 64ull << 20;
// Segment positions are 32-bit in the .index file: a segment (its limit plus one batch that
// may overshoot it) must stay below 2^31 bytes.
inline constexpr uint64_t kSegmentBytesMax = 1ull << 30;
inline constexpr uint64_t kSegmentBytesMin = 1024;
static_assert(kSegmentBytesMax + kBatchBytesMax < (1ull << 31));
// Offsets relative to the segment base are 32-bit in both indexes.
inline constexpr int64_t kSegmentOffsetSpanMax = INT32_MAX;

// .index: relative offset (uint32 BE) then position (uint32 BE).
inline constexpr uint32_t kIndexEntryBytes = 8;
// .timeindex: timestamp (int64 BE) then relative offset (uint32 BE).
inline constexpr uint32_t kTimeIndexEntryBytes = 12;

inline constexpr std::string_view kLogSuffix = ".log";
// A compacted segment's replaced .log, set aside until it is removed: `<base>.log.<n>.deleted`.
inline constexpr std::string_view kAsideSuffix = ".deleted";
inline constexpr std::string_view kIndexSuffix = ".index";
inline constexpr std::string_view kTimeIndexSuffix = ".timeindex";
inline constexpr std::string_view kMetaFileName = "partition.meta";
inline constexpr std::string_view kCleanShutdownFileName = "clean_shutdown";
inline constexpr uint32_t kBaseOffsetDigits = 20;

// partition.meta: magic, log start offset, recovery point, CRC-32C of the 24 bytes before it.
inline constexpr char kMetaMagic[8] = {'S', 'L', 'U', 'I', 'C', 'E', 'M', '1'};
inline constexpr uint32_t kMetaBytes = 28;
static_assert(kMetaBytes == 8 + 8 + 8 + 4);

struct IndexEntry {
  int64_t offset = 0;     // absolute offset of the batch that starts at `position`
  uint64_t position = 0;  // byte position of that batch in the .log file
};

// A .timeindex entry: every batch before `offset` in the segment has a max timestamp of at
// most `timestamp` (the running maximum before the batch at `offset`).
struct TimeEntry {
  int64_t timestamp = 0;
  int64_t offset = 0;
};

void encode_index_entry(std::byte* out, int64_t base_offset, const IndexEntry& entry);
IndexEntry decode_index_entry(const std::byte* in, int64_t base_offset);
void encode_time_entry(std::byte* out, int64_t base_offset, const TimeEntry& entry);
TimeEntry decode_time_entry(const std::byte* in, int64_t base_offset);

// "00000000000000000042.log" for (42, ".log").
std::string segment_file_name(int64_t base_offset, std::string_view suffix);
// The base offset of a file named like segment_file_name(…, suffix), else nullopt.
std::optional<int64_t> parse_segment_file_name(std::string_view name, std::string_view suffix);

struct Meta {
  int64_t log_start_offset = 0;
  int64_t recovery_point = 0;
};
void encode_meta(std::byte* out, const Meta& meta);
// nullopt when the bytes are short, the magic is wrong or the CRC does not match.
std::optional<Meta> decode_meta(Bytes bytes);

}  // namespace sluice::log
