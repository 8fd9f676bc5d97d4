// Recovery at open: torn and corrupt tails, damaged closed segments, damaged indexes.
#include <gtest/gtest.h>

#include <fstream>
#include <set>

#include "log/log.h"
#include "log/tests/test_util.h"

namespace sluice::log {
namespace {

using testing::append_and_wait;
using testing::flip_byte;
using testing::make_batch;
using testing::segment_path;
using testing::truncate_to;
using Kind = RecoveryIssue::Kind;

class LogRecovery : public ::testing::Test {
 protected:
  LogRecovery() : fds_(64) {}
  ~LogRecovery() override { ring_.drain(); }

  std::unique_ptr<PartitionLog> open_log() {
    auto log = PartitionLog::open(dir_.path(), config_, ring_, fds_);
    EXPECT_TRUE(log) << (log ? "" : log.error().message);
    return log ? std::move(*log) : nullptr;
  }

  // Appends `n` batches of 2 records; remembers where each batch starts in its segment.
  void fill(PartitionLog& log, int n, size_t value_bytes = 200) {
    for (int i = 0; i < n; ++i) {
      batches_.push_back(make_batch(2, value_bytes, 1000 + i));
      auto r = append_and_wait(log, ring_, batches_.back());
      ASSERT_TRUE(r);
      const int64_t base = log.segment_base_offsets().back();
      if (base != segment_) {
        segment_ = base;
        position_ = 0;
      }
      starts_.push_back({segment_, position_, *r->base_offset});
      position_ += batches_.back().size();
    }
  }

  static bool has_issue(const PartitionLog& log, Kind kind) {
    for (const auto& issue : log.recovery_report().issues) {
      if (issue.kind == kind) return true;
    }
    return false;
  }

  struct Start {
    int64_t segment;
    uint64_t position;
    int64_t offset;
  };
  // 40 batches in 4 KiB segments, then the second segment loses its last batch (closed,
  // before the recovery point: damage); reopens the log into `log`.
  Start cut_last_batch_of_second_segment(std::unique_ptr<PartitionLog>& log) {
    config_.segment_bytes = 4096;
    log = open_log();
    fill(*log, 40);
    const auto segments = log->segment_base_offsets();
    log.reset();
    const Start last_of_second = last_batch_of(segments[1]);
    truncate_to(segment_path(dir_.path(), segments[1], ".log"), last_of_second.position);
    log = open_log();
    return last_of_second;
  }
  Start last_batch_of(int64_t segment) const {
    Start last{};
    for (const Start& s : starts_) {
      if (s.segment == segment) last = s;
    }
    return last;
  }
  testing::TempDir dir_;
  IoRing ring_;
  FdCache fds_;
  LogConfig config_;
  std::deque<std::vector<std::byte>> batches_;
  std::vector<Start> starts_;
  int64_t segment_ = -1;
  uint64_t position_ = 0;
};

TEST_F(LogRecovery, UncleanReopenKeepsEverythingAndIgnoresPreallocatedZeros) {
  config_.segment_bytes = 4096;
  auto log = open_log();
  fill(*log, 20);
  const auto expected = *log->read_copy(Offset(0), 1 << 20);
  log.reset();  // no close(): as after a crash
  log = open_log();
  EXPECT_FALSE(log->recovery_report().clean_shutdown);
  EXPECT_GE(log->recovery_report().segments_scanned, 1u);
  EXPECT_TRUE(log->recovery_report().issues.empty());
  EXPECT_EQ(*log->log_end_offset(), 40);
  EXPECT_EQ(*log->read_copy(Offset(0), 1 << 20), expected);
}

TEST_F(LogRecovery, TruncatedLastSegmentMidBatchIsCutAndReported) {
  auto log = open_log();
  fill(*log, 5);
  log.reset();
  const Start last = starts_.back();
  truncate_to(segment_path(dir_.path(), last.segment, ".log"), last.position + 100);
  log = open_log();
  const auto& issues = log->recovery_report().issues;
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_EQ(issues[0].kind, Kind::kTornTail);
  EXPECT_EQ(issues[0].offset, last.offset);
  EXPECT_EQ(issues[0].position, last.position);
  EXPECT_EQ(issues[0].bytes_removed, 100u);
  EXPECT_EQ(*log->log_end_offset(), last.offset);
  EXPECT_TRUE(log->read_copy(Offset(0), 1 << 20));
  // Appends continue where the valid data ends.
  batches_.push_back(make_batch(1, 10, 1));
  EXPECT_EQ(*append_and_wait(*log, ring_, batches_.back())->base_offset, last.offset);
}

// Appends in flight across a roll: the older segment's last write never completed, the newer
// segment exists. Past the recovery point nothing after the gap was acknowledged: cut there.
TEST_F(LogRecovery, GapBeforeANewerSegmentPastTheRecoveryPointCutsTheLog) {
  config_.segment_bytes = 4096;
  auto log = open_log();
  fill(*log, 40);
  const auto segments = log->segment_base_offsets();
  ASSERT_GT(segments.size(), 3u);
  log.reset();
  const Start last_of_second = last_batch_of(segments[1]);
  truncate_to(segment_path(dir_.path(), segments[1], ".log"), last_of_second.position);
  {  // as if the crash came before the flush that would have moved the recovery point
    std::byte raw[kMetaBytes];
    encode_meta(raw, {.log_start_offset = 0, .recovery_point = segments[1]});
    std::ofstream(dir_.path() / kMetaFileName, std::ios::binary)
        .write(reinterpret_cast<const char*>(raw), sizeof(raw));
  }
  log = open_log();
  ASSERT_TRUE(has_issue(*log, Kind::kTornTail));
  EXPECT_EQ(log->recovery_report().issues[0].offset, last_of_second.offset);
  EXPECT_EQ(*log->log_end_offset(), last_of_second.offset);
  EXPECT_EQ(log->segment_base_offsets(), (std::vector<int64_t>{segments[0], segments[1]}));
  EXPECT_FALSE(std::filesystem::exists(segment_path(dir_.path(), segments[2], ".log")));
  EXPECT_TRUE(log->read_copy(Offset(0), 1 << 20));
  batches_.push_back(make_batch(1, 10, 1));
  EXPECT_EQ(*append_and_wait(*log, ring_, batches_.back())->base_offset, last_of_second.offset);
}

// Before the recovery point the same gap is damage to durable data: reported, not cut.
TEST_F(LogRecovery, GapBeforeTheRecoveryPointIsCorruption) {
  std::unique_ptr<PartitionLog> log;
  const Start last_of_second = cut_last_batch_of_second_segment(log);
  ASSERT_TRUE(has_issue(*log, Kind::kCorruptClosed));
  EXPECT_EQ(*log->log_end_offset(), 80);
  EXPECT_EQ(*log->read(Offset(0), 1 << 20)->next_offset, last_of_second.offset);
}

// A replica repairs such damage by cutting its log there and fetching the rest again: the
// log then ends where the good data ends, appends continue from there, and re-opening finds
// nothing wrong.
TEST_F(LogRecovery, DamageFoundAtOpenIsCutAwayOnRequest) {
  std::unique_ptr<PartitionLog> log;
  const Start last_of_second = cut_last_batch_of_second_segment(log);
  const auto segments = log->segment_base_offsets();
  ASSERT_TRUE(has_issue(*log, Kind::kCorruptClosed));
  auto cut = log->truncate_damage();
  ASSERT_TRUE(cut) << cut.error().message;
  EXPECT_EQ(**cut, last_of_second.offset);
  EXPECT_EQ(*log->log_end_offset(), last_of_second.offset);
  EXPECT_EQ(log->segment_base_offsets().back(), segments[1]);
  auto again = log->truncate_damage();  // nothing damaged any more
  ASSERT_TRUE(again);
  EXPECT_EQ(**again, last_of_second.offset);
  auto extra = make_batch(2, 200, 7);
  auto more = append_and_wait(*log, ring_, extra);
  ASSERT_TRUE(more) << more.error().message;
  EXPECT_EQ(*more->base_offset, last_of_second.offset);
  auto all = log->read_copy(Offset(0), 1 << 20);
  ASSERT_TRUE(all) << all.error().message;
  ASSERT_TRUE(log->close());
  log = open_log();
  EXPECT_FALSE(has_issue(*log, Kind::kCorruptClosed));
  EXPECT_EQ(*log->log_end_offset(), last_of_second.offset + 2);
}

TEST_F(LogRecovery, CorruptBatchInTheActiveSegmentCutsTheTailThere) {
  auto log = open_log();
  fill(*log, 6);
  log.reset();
  const Start bad = starts_[2];
  flip_byte(segment_path(dir_.path(), bad.segment, ".log"), bad.position + 100);
  log = open_log();
  ASSERT_TRUE(has_issue(*log, Kind::kCorruptTail));
  const auto& issue = log->recovery_report().issues[0];
  EXPECT_EQ(issue.offset, bad.offset);
  EXPECT_EQ(issue.position, bad.position);
  EXPECT_EQ(*log->log_end_offset(), bad.offset);
}

TEST_F(LogRecovery, FlippedByteInAClosedSegmentIsReportedAndNeverServed) {
  config_.segment_bytes = 4096;
  config_.recovery_scan = RecoveryScan::kAll;
  auto log = open_log();
  fill(*log, 40);
  const auto segments = log->segment_base_offsets();
  ASSERT_GT(segments.size(), 3u);
  ASSERT_TRUE(log->close());
  log.reset();
  // A batch in the middle of the second segment.
  std::vector<Start> in_second;
  for (const Start& s : starts_) {
    if (s.segment == segments[1]) in_second.push_back(s);
  }
  ASSERT_GE(in_second.size(), 3u);
  const Start bad = in_second[in_second.size() / 2];
  flip_byte(segment_path(dir_.path(), bad.segment, ".log"), bad.position + 150);
  log = open_log();
  ASSERT_TRUE(has_issue(*log, Kind::kCorruptClosed));
  const auto& issue = log->recovery_report().issues[0];
  EXPECT_EQ(issue.segment_base_offset, segments[1]);
  EXPECT_EQ(issue.offset, bad.offset);
  EXPECT_EQ(issue.position, bad.position);
  // Reads stop before the damage, and refuse to start in it.
  auto before = log->read(Offset(0), 1 << 20);
  ASSERT_TRUE(before);
  EXPECT_EQ(*before->next_offset, bad.offset);
  EXPECT_TRUE(log->read_copy(Offset(0), 1 << 20));
  EXPECT_EQ(log->read(Offset(bad.offset), 1 << 20).error().code, LogErrc::kCorrupt);
  EXPECT_EQ(log->read(Offset(bad.offset + 2), 1 << 20).error().code, LogErrc::kCorrupt);
  // Later segments are intact and served.
  auto later = log->read_copy(Offset(segments[2]), 1 << 20);
  ASSERT_TRUE(later);
  EXPECT_FALSE(later->empty());
  EXPECT_EQ(*log->log_end_offset(), 80);
}

TEST_F(LogRecovery, CopyingReadsCatchAFlippedByteTheDefaultOpenDoesNotScanFor) {
  config_.segment_bytes = 4096;
  auto log = open_log();
  fill(*log, 40);
  ASSERT_TRUE(log->close());
  log.reset();
  const Start bad = starts_[3];  // first segment, a closed one
  ASSERT_EQ(bad.segment, 0);
  flip_byte(segment_path(dir_.path(), 0, ".log"), bad.position + 150);
  log = open_log();  // clean shutdown: closed segments get cheap checks only
  auto copy = log->read_copy(Offset(bad.offset), 100);
  ASSERT_FALSE(copy);
  EXPECT_EQ(copy.error().code, LogErrc::kCorrupt);
}

TEST_F(LogRecovery, DamagedHeaderAtTheEndOfAClosedSegmentIsFoundByTheDefaultChecks) {
  config_.segment_bytes = 4096;
  auto log = open_log();
  fill(*log, 40);
  ASSERT_TRUE(log->close());
  log.reset();
  const Start last_of_first = last_batch_of(0);
  flip_byte(segment_path(dir_.path(), 0, ".log"), last_of_first.position + 16);  // magic
  log = open_log();
  ASSERT_TRUE(has_issue(*log, Kind::kCorruptClosed));
  EXPECT_EQ(*log->read(Offset(0), 1 << 20)->next_offset, last_of_first.offset);
  EXPECT_EQ(log->read(Offset(last_of_first.offset), 100).error().code, LogErrc::kCorrupt);
}

TEST_F(LogRecovery, DamagedIndexesAreRebuilt) {
  config_.segment_bytes = 4096;
  config_.index_interval_bytes = 300;
  auto log = open_log();
  fill(*log, 40);
  const auto expected = *log->read_copy(Offset(0), 1 << 20);
  ASSERT_TRUE(log->close());
  log.reset();
  const auto segments = [&] {
    std::set<int64_t> s;
    for (const Start& st : starts_) s.insert(st.segment);
    return std::vector<int64_t>(s.begin(), s.end());
  }();
  { std::ofstream(segment_path(dir_.path(), segments[0], ".index"), std::ios::app) << "xyz"; }
  std::filesystem::remove(segment_path(dir_.path(), segments[1], ".timeindex"));
  log = open_log();
  int rebuilt = 0;
  for (const auto& issue : log->recovery_report().issues)
    rebuilt += issue.kind == Kind::kIndexRebuilt;
  EXPECT_EQ(rebuilt, 2);
  EXPECT_EQ(*log->read_copy(Offset(0), 1 << 20), expected);
  for (const Start& s : starts_) {
    auto r = log->read(Offset(s.offset + 1), 1);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->ranges.size(), 1u);
    EXPECT_EQ(r->ranges[0].position, s.position);
  }
  EXPECT_EQ(***log->offset_for_timestamp(1020), 39);  // batch 19: 1019 at 38, 1020 at 39
}

TEST_F(LogRecovery, MissingTailOfTheActiveIndexIsRebuiltByTheScan) {
  config_.index_interval_bytes = 300;
  auto log = open_log();
  fill(*log, 20);
  log.reset();
  truncate_to(segment_path(dir_.path(), 0, ".index"), 8);
  log = open_log();
  for (const Start& s : starts_) {
    auto r = log->read(Offset(s.offset), 1);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->ranges[0].position, s.position);
  }
  EXPECT_EQ(std::filesystem::file_size(segment_path(dir_.path(), 0, ".index")) % 8, 0u);
  EXPECT_GT(std::filesystem::file_size(segment_path(dir_.path(), 0, ".index")), 8u);
}

// The scrubber finds what recovery at open does not look at (a clean shutdown scans nothing
// before a closed segment's last index entry), in bounded steps, and marks it like recovery.
TEST_F(LogRecovery, ScrubFindsAFlippedByteInAClosedSegmentAndStopsServingIt) {
  config_.segment_bytes = 8192;
  config_.index_interval_bytes = 1024;
  auto log = open_log();
  fill(*log, 60);
  const auto segments = log->segment_base_offsets();
  ASSERT_GT(segments.size(), 3u);
  ASSERT_TRUE(log->close());
  log.reset();
  std::vector<Start> in_second;
  for (const Start& s : starts_) {
    if (s.segment == segments[1]) in_second.push_back(s);
  }
  ASSERT_GE(in_second.size(), 3u);
  const Start bad = in_second[1];  // before the segment's last index entry
  flip_byte(segment_path(dir_.path(), bad.segment, ".log"), bad.position + 150);
  log = open_log();
  EXPECT_FALSE(has_issue(*log, Kind::kCorruptClosed));  // recovery did not see it
  // Small steps: each checks about max_bytes (whole batches), never all at once.
  uint64_t checked = 0;
  std::vector<RecoveryIssue> found;
  for (int step = 0; step < 1000 && found.empty(); ++step) {
    auto r = log->scrub(1000);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_LT(r->bytes_checked, 1000u + 2 * 1024u);
    EXPECT_LT(r->bytes_read, 1000u + 2 * 1024u);
    checked += r->bytes_checked;
    found = r->issues;
    ring_.drain();  // its read (or open), through the ring: checked by the next step
  }
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].kind, Kind::kCorruptClosed);
  EXPECT_EQ(found[0].segment_base_offset, segments[1]);
  EXPECT_EQ(found[0].offset, bad.offset);
  EXPECT_EQ(found[0].position, bad.position);
  EXPECT_GE(checked, bad.position);
  EXPECT_EQ(log->read(Offset(bad.offset), 1 << 20).error().code, LogErrc::kCorrupt);
  auto before = log->read(Offset(0), 1 << 20);
  ASSERT_TRUE(before);
  EXPECT_EQ(*before->next_offset, bad.offset);
  // Reported once: later rounds skip the damaged segment.
  for (int step = 0; step < 100; ++step) {
    auto r = log->scrub(1 << 20);
    ASSERT_TRUE(r);
    EXPECT_TRUE(r->issues.empty());
    ring_.drain();
  }
  // Cut at the damaged batch (what a replica does before fetching the rest again): the
  // segments after it go, the good batches before it stay readable.
  auto cut = log->truncate_damage();
  ASSERT_TRUE(cut) << cut.error().message;
  EXPECT_EQ(**cut, bad.offset);
  EXPECT_EQ(log->segment_base_offsets().size(), 2u);
  auto kept = log->read_copy(Offset(0), 1 << 20);
  ASSERT_TRUE(kept) << kept.error().message;
  auto extra = make_batch(2, 200, 7);
  auto more = append_and_wait(*log, ring_, extra);
  ASSERT_TRUE(more) << more.error().message;
  EXPECT_EQ(*more->base_offset, bad.offset);
  ASSERT_TRUE(log->close());
  log = open_log();
  EXPECT_FALSE(has_issue(*log, Kind::kCorruptClosed));
  EXPECT_EQ(*log->log_end_offset(), bad.offset + 2);
}

// The scrubber's read goes through the ring and is checked a step later: a segment cut (or
// rewritten by compaction) meanwhile must not be checked against bytes read before, which no
// longer fit it (groups.compaction saw "bad batch header at position 0" on a good segment).
TEST_F(LogRecovery, AScrubReadOfASegmentCutMeanwhileIsDropped) {
  config_.segment_bytes = 8192;
  auto log = open_log();
  fill(*log, 60);
  const auto segments = log->segment_base_offsets();
  ASSERT_GT(segments.size(), 3u);
  // The first step that reads reads the first segment (after opening it through the ring,
  // unless its handle is cached).
  for (int step = 0;; ++step) {
    ASSERT_LT(step, 3);
    auto sent = log->scrub(1 << 20);
    ASSERT_TRUE(sent);
    ring_.drain();  // read, not checked yet
    if (sent->bytes_read > 0) break;
  }
  // Cut inside the first segment: the read holds batches past its new end.
  ASSERT_TRUE(log->truncate_suffix(Offset(segments[0] + 4)));
  for (int step = 0; step < 20; ++step) {
    auto r = log->scrub(1 << 20);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_TRUE(r->issues.empty()) << r->issues[0].detail;
    ring_.drain();
  }
  auto all = log->read_copy(Offset(0), 1 << 20);
  ASSERT_TRUE(all) << all.error().message;  // nothing marked damaged
  EXPECT_EQ(*log->log_end_offset(), segments[0] + 4);
}

TEST_F(LogRecovery, PreallocationGrowsWithTheSegmentAndIsTrimmedAtClose) {
  config_.segment_bytes = 64ull << 20;
  auto log = open_log();
  const auto log_file = segment_path(dir_.path(), 0, ".log");
  EXPECT_EQ(std::filesystem::file_size(log_file), 1u << 20);  // not 64 MiB up front
  fill(*log, 150, 10000);  // about 3 MiB
  const auto size = std::filesystem::file_size(log_file);
  EXPECT_GT(size, log->size_bytes());
  EXPECT_LE(size, 2 * log->size_bytes() + (1u << 20));
  ASSERT_TRUE(log->close());
  EXPECT_EQ(std::filesystem::file_size(log_file), log->size_bytes());
}

}  // namespace
}  // namespace sluice::log
