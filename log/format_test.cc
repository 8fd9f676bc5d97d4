#include "log/format.h"

#include <gtest/gtest.h>

namespace sluice::log {
namespace {

TEST(LogFormat, SegmentFileNamesRoundTrip) {
  EXPECT_EQ(segment_file_name(42, kLogSuffix), "00000000000000000042.log");
  EXPECT_EQ(parse_segment_file_name("00000000000000000042.log", kLogSuffix), 42);
  EXPECT_EQ(parse_segment_file_name("00000000000000000042.index", kIndexSuffix), 42);
  EXPECT_FALSE(parse_segment_file_name("00000000000000000042.log", kIndexSuffix));
  EXPECT_FALSE(parse_segment_file_name("0000000000000000004x.log", kLogSuffix));
  EXPECT_FALSE(parse_segment_file_name("42.log", kLogSuffix));
}

TEST(LogFormat, IndexEntriesAreRelativeAndBigEndian) {
  std::byte raw[kIndexEntryBytes];
  encode_index_entry(raw, 1000, {.offset = 1258, .position = 70000});
  EXPECT_EQ(load_be<uint32_t>(raw), 258u);
  EXPECT_EQ(load_be<uint32_t>(raw + 4), 70000u);
  const IndexEntry e = decode_index_entry(raw, 1000);
  EXPECT_EQ(e.offset, 1258);
  EXPECT_EQ(e.position, 70000u);
  std::byte traw[kTimeIndexEntryBytes];
  encode_time_entry(traw, 1000, {.timestamp = -5, .offset = 1001});
  const TimeEntry t = decode_time_entry(traw, 1000);
  EXPECT_EQ(t.timestamp, -5);
  EXPECT_EQ(t.offset, 1001);
}

TEST(LogFormat, MetaIsChecked) {
  std::byte raw[kMetaBytes];
  encode_meta(raw, {.log_start_offset = 7, .recovery_point = 9});
  auto meta = decode_meta(raw);
  ASSERT_TRUE(meta);
  EXPECT_EQ(meta->log_start_offset, 7);
  EXPECT_EQ(meta->recovery_point, 9);
  raw[10] ^= std::byte{1};
  EXPECT_FALSE(decode_meta(raw));
  EXPECT_FALSE(decode_meta(Bytes(raw, 10)));
}

}  // namespace
}  // namespace sluice::log
