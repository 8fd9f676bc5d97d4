// scan_segment over bytes in memory: every recovery decision, without a disk.
#include "log/segment_reader.h"

#include <gtest/gtest.h>

#include <limits>

#include "log/tests/test_util.h"

namespace sluice::log {
namespace {

using testing::make_batch;

// Three batches at offsets 0-1, 2-4, 5 and their start positions.
struct Segment3 {
  std::vector<std::byte> bytes;
  std::vector<uint64_t> starts;
  Segment3() {
    int64_t offset = 0;
    for (int records : {2, 3, 1}) {
      auto b = make_batch(records, 40, 1000 + offset);
      kafka::set_base_offset(b, offset);
      starts.push_back(bytes.size());
      bytes.insert(bytes.end(), b.begin(), b.end());
      offset += records;
    }
  }
};

TEST(LogScanSegment, EmptyBytesEndCleanly) {
  const ScanResult r = scan_segment({}, {.expected_base_offset = 0});
  EXPECT_EQ(r.stop, ScanStop::kEnd);
  EXPECT_EQ(r.valid_bytes, 0u);
  EXPECT_EQ(r.batches, 0u);
  EXPECT_EQ(r.next_offset, -1);
  EXPECT_FALSE(r.zero_tail);
}

TEST(LogScanSegment, ValidBatchesAreVisitedInOrder) {
  Segment3 s;
  std::vector<ScannedBatch> seen;
  const ScanResult r = scan_segment(s.bytes, {.expected_base_offset = 0},
                                    [&](const ScannedBatch& b) { seen.push_back(b); });
  EXPECT_EQ(r.stop, ScanStop::kEnd);
  EXPECT_EQ(r.valid_bytes, s.bytes.size());
  EXPECT_EQ(r.next_offset, 6);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[1].position, s.starts[1]);
  EXPECT_EQ(seen[1].base_offset, 2);
  EXPECT_EQ(seen[1].last_offset, 4);
  EXPECT_EQ(seen[2].max_timestamp, 1005);
  EXPECT_EQ(r.max_timestamp, 1005);
}

TEST(LogScanSegment, ZeroTailIsTheEndNotDamage) {
  Segment3 s;
  const size_t data = s.bytes.size();
  s.bytes.resize(data + 10000);
  const ScanResult r = scan_segment(s.bytes, {.expected_base_offset = 0});
  EXPECT_EQ(r.stop, ScanStop::kEnd);
  EXPECT_TRUE(r.zero_tail);
  EXPECT_EQ(r.valid_bytes, data);
}

TEST(LogScanSegment, TornHeaderAtTailIsTorn) {
  Segment3 s;
  s.bytes.resize(s.starts[2] + 11);  // base offset and part of the length
  const ScanResult r = scan_segment(s.bytes, {.expected_base_offset = 0});
  EXPECT_EQ(r.stop, ScanStop::kTornTail);
  EXPECT_EQ(r.valid_bytes, s.starts[2]);
  EXPECT_EQ(r.next_offset, 5);
}

TEST(LogScanSegment, TornPayloadAtTailIsTorn) {
  Segment3 s;
  s.bytes.resize(s.bytes.size() - 3);
  const ScanResult r = scan_segment(s.bytes, {.expected_base_offset = 0});
  EXPECT_EQ(r.stop, ScanStop::kTornTail);
  EXPECT_EQ(r.valid_bytes, s.starts[2]);
}

TEST(LogScanSegment, PartlyPersistedLastWriteFollowedByZerosIsTorn) {
  Segment3 s;
  // The last batch's middle never reached the disk; preallocated zeros follow.
  std::fill(s.bytes.begin() + s.starts[2] + 70, s.bytes.end() - 2, std::byte{0});
  s.bytes.resize(s.bytes.size() + 4096);
  const ScanResult r = scan_segment(s.bytes, {.expected_base_offset = 0});
  EXPECT_EQ(r.stop, ScanStop::kTornTail);
  EXPECT_EQ(r.valid_bytes, s.starts[2]);
}

TEST(LogScanSegment, BadChecksumBeforeMoreDataIsCorrupt) {
  Segment3 s;
  s.bytes[s.starts[1] + 80] ^= std::byte{1};
  const ScanResult r = scan_segment(s.bytes, {.expected_base_offset = 0});
  EXPECT_EQ(r.stop, ScanStop::kCorrupt);
  EXPECT_EQ(r.valid_bytes, s.starts[1]);
  EXPECT_EQ(r.next_offset, 2);
  EXPECT_NE(r.reason.find("CRC"), std::string::npos) << r.reason;
}

TEST(LogScanSegment, CrcNotCheckedWhenAsked) {
  Segment3 s;
  s.bytes[s.starts[1] + 80] ^= std::byte{1};
  const ScanResult r = scan_segment(s.bytes, {.expected_base_offset = 0, .verify_crc = false});
  EXPECT_EQ(r.stop, ScanStop::kEnd);
  EXPECT_EQ(r.batches, 3u);
}

TEST(LogScanSegment, OffsetGapIsCorrupt) {
  Segment3 s;
  kafka::set_base_offset(MutableBytes(s.bytes).subspan(s.starts[1]), 3);
  const ScanResult r = scan_segment(s.bytes, {.expected_base_offset = 0});
  EXPECT_EQ(r.stop, ScanStop::kCorrupt);
  EXPECT_EQ(r.valid_bytes, s.starts[1]);
}

TEST(LogScanSegment, OffsetsThatWouldOverflowAreCorrupt) {
  // Found by log_scan_fuzz: a batch whose last offset is INT64_MAX (no next offset exists).
  for (const int64_t base : {std::numeric_limits<int64_t>::max() - 1,
                             std::numeric_limits<int64_t>::max()}) {
    Segment3 s;  // its first batch spans two offsets
    kafka::set_base_offset(MutableBytes(s.bytes).subspan(0, s.starts[1]), base);
    kafka::update_crc(MutableBytes(s.bytes).subspan(0, s.starts[1]));
    const ScanResult r = scan_segment(s.bytes, {.expected_base_offset = -1});
    EXPECT_EQ(r.stop, ScanStop::kCorrupt) << base;
    EXPECT_EQ(r.valid_bytes, 0u) << base;
    EXPECT_EQ(r.batches, 0u) << base;
  }
}

TEST(LogScanSegment, FirstBatchMustStartAtTheSegmentBase) {
  Segment3 s;
  const ScanResult r = scan_segment(s.bytes, {.expected_base_offset = 100});
  EXPECT_EQ(r.stop, ScanStop::kCorrupt);
  EXPECT_EQ(r.valid_bytes, 0u);
  EXPECT_EQ(r.batches, 0u);
}

TEST(LogScanSegment, GarbageLengthIsCorrupt) {
  Segment3 s;
  store_be<int32_t>(s.bytes.data() + s.starts[1] + 8, 5);  // shorter than a header
  const ScanResult r = scan_segment(s.bytes, {.expected_base_offset = 0});
  EXPECT_EQ(r.stop, ScanStop::kCorrupt);
  EXPECT_EQ(r.valid_bytes, s.starts[1]);
}

TEST(LogScanSegment, AllZeroHelper) {
  std::vector<std::byte> z(10000);
  EXPECT_TRUE(all_zero(z));
  z[9999] = std::byte{1};
  EXPECT_FALSE(all_zero(z));
  EXPECT_TRUE(all_zero({}));
}

}  // namespace
}  // namespace sluice::log
