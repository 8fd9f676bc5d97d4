// Log compaction: the pure batch rewrite, and compact_step on a real PartitionLog.
#include "log/compaction.h"

#include <gtest/gtest.h>

#include <map>

#include "log/log.h"
#include "log/tests/test_util.h"
#include "protocol/record_batch.h"

namespace sluice::log {
namespace {

Bytes as_bytes(const std::string& s) {
  return Bytes(reinterpret_cast<const std::byte*>(s.data()), s.size());
}

// `count` records with keys "k<(first + i) % keys>" and values "v<first + i>"; a value of
// "" is written as a tombstone.
std::vector<std::byte> keyed_batch(int64_t base, int first, int count, int keys, int64_t ts,
                                   bool tombstones = false) {
  kafka::RecordBatchBuilder b({.base_offset = base});
  std::vector<std::string> strings;
  strings.reserve(2 * static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) {
    strings.push_back("k" + std::to_string((first + i) % keys));
    strings.push_back("v" + std::to_string(first + i));
    b.append(ts, as_bytes(strings[strings.size() - 2]),
             tombstones ? std::nullopt : std::optional<Bytes>(as_bytes(strings.back())));
  }
  return *b.build();
}

// key -> (offset, value or "<null>") of every record in `bytes`.
std::multimap<std::string, std::pair<int64_t, std::string>> records_of(Bytes bytes) {
  std::multimap<std::string, std::pair<int64_t, std::string>> out;
  kafka::BatchIterator it(bytes);
  std::vector<std::byte> scratch;
  for (auto v = it.next(); v && *v; v = it.next()) {
    auto rr = (*v)->records(scratch);
    EXPECT_TRUE(rr);
    for (auto r = rr->next(); r && *r; r = rr->next()) {
      const auto& rec = **r;
      std::string key(reinterpret_cast<const char*>(rec.key->data()), rec.key->size());
      std::string value = rec.value ? std::string(reinterpret_cast<const char*>(rec.value->data()),
                                                  rec.value->size())
                                    : "<null>";
      out.emplace(key, std::pair{(*v)->base_offset() + rec.offset_delta, value});
    }
  }
  return out;
}

std::vector<std::pair<int64_t, int64_t>> spans_of(Bytes bytes) {
  std::vector<std::pair<int64_t, int64_t>> out;
  kafka::BatchIterator it(bytes);
  for (auto v = it.next(); v && *v; v = it.next()) {
    out.emplace_back((*v)->base_offset(), (*v)->last_offset());
  }
  return out;
}

TEST(Compaction, KeepsLatestRecordPerKeyAndEveryBatchSpan) {
  std::vector<std::byte> log;
  for (int b = 0; b < 10; ++b) {
    auto batch = keyed_batch(b * 10, b * 10, 10, 7, 1000);
    log.insert(log.end(), batch.begin(), batch.end());
  }
  KeyOffsets latest;
  ASSERT_TRUE(index_keys(log, latest));
  ASSERT_EQ(latest.size(), 7u);
  CompactionStats stats;
  auto out = compact_batches(log, latest, {.now_ms = 2000, .delete_retention_ms = 10}, stats);
  ASSERT_TRUE(out);
  auto recs = records_of(*out);
  ASSERT_EQ(recs.size(), 7u);
  for (int k = 0; k < 7; ++k) {
    const int last = 99 - (99 - k) % 7;  // the last of 0..99 with i % 7 == k
    auto it = recs.find("k" + std::to_string(k));
    ASSERT_NE(it, recs.end());
    EXPECT_EQ(it->second.first, last);
    EXPECT_EQ(it->second.second, "v" + std::to_string(last));
  }
  // Offsets never move: the batches still cover 0..99 contiguously, and emptied batches in a
  // row merged into one.
  auto spans = spans_of(*out);
  ASSERT_FALSE(spans.empty());
  EXPECT_EQ(spans.front().first, 0);
  EXPECT_EQ(spans.back().second, 99);
  for (size_t i = 1; i < spans.size(); ++i) EXPECT_EQ(spans[i].first, spans[i - 1].second + 1);
  EXPECT_LT(spans.size(), 10u);
  EXPECT_EQ(stats.records_removed, 93u);
  EXPECT_LT(out->size(), log.size());
  // Compacting again changes nothing (every batch is copied whole).
  CompactionStats again;
  auto out2 = compact_batches(*out, latest, {.now_ms = 2000, .delete_retention_ms = 10}, again);
  ASSERT_TRUE(out2);
  EXPECT_EQ(*out2, *out);
  EXPECT_EQ(again.batches_rebuilt, 0u);
}

TEST(Compaction, TombstonesGoOnlyAfterDeleteRetention) {
  std::vector<std::byte> log = keyed_batch(0, 0, 4, 4, 1000);
  auto dead = keyed_batch(4, 0, 2, 4, 5000, /*tombstones=*/true);  // k0, k1 deleted
  log.insert(log.end(), dead.begin(), dead.end());
  KeyOffsets latest;
  ASSERT_TRUE(index_keys(log, latest));
  CompactionStats young;
  auto kept = compact_batches(log, latest, {.now_ms = 6000, .delete_retention_ms = 10000}, young);
  ASSERT_TRUE(kept);
  auto recs = records_of(*kept);
  EXPECT_EQ(recs.size(), 4u);  // k0, k1 tombstones, k2, k3
  EXPECT_EQ(recs.find("k0")->second.second, "<null>");
  CompactionStats old;
  auto gone = compact_batches(log, latest, {.now_ms = 20000, .delete_retention_ms = 10000}, old);
  ASSERT_TRUE(gone);
  recs = records_of(*gone);
  EXPECT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs.count("k0"), 0u);
  EXPECT_EQ(old.tombstones_removed, 2u);
  EXPECT_EQ(spans_of(*gone), spans_of(log));  // the emptied batch still spans 4..5
  EXPECT_LT(gone->size(), kept->size());
}

TEST(Compaction, CompactStepRewritesClosedSegmentsOfARealLog) {
  testing::TempDir dir;
  IoRing ring;
  FdCache fds(64);
  LogConfig config;
  config.segment_bytes = 2048;
  config.preallocate = false;
  std::deque<std::vector<std::byte>> batches;
  {
    auto log = PartitionLog::open(dir.path(), config, ring, fds);
    ASSERT_TRUE(log);
    for (int b = 0; b < 100; ++b) {
      batches.push_back(keyed_batch(0, b * 10, 10, 50, 1000));
      ASSERT_TRUE(testing::append_and_wait(**log, ring, batches.back()));
    }
    ASSERT_GT((*log)->segment_count(), 5u);
    const uint64_t before = (*log)->size_bytes();
    int64_t cursor = -1;
    CompactionStats stats;
    int steps = 0;
    while (true) {
      auto r = compact_step(**log, {.now_ms = 2000}, &cursor, stats);
      ASSERT_TRUE(r) << r.error().message;
      if (!*r) break;
      ASSERT_LT(++steps, 1000);
    }
    EXPECT_GT(stats.segments_rewritten, 0u);
    EXPECT_LT((*log)->size_bytes(), before);
    auto all = (*log)->read_copy(Offset(0), 1 << 30);
    ASSERT_TRUE(all);
    auto recs = records_of(*all);
    // Every key's latest value is there, once per key outside the active segment.
    for (int k = 0; k < 50; ++k) {
      auto range = recs.equal_range("k" + std::to_string(k));
      ASSERT_NE(range.first, range.second);
      int64_t newest = -1;
      for (auto it = range.first; it != range.second; ++it)
        newest = std::max(newest, it->second.first);
      EXPECT_EQ(newest, 950 + k);
    }
    EXPECT_LT(recs.size(), 50u + 200u);
    ASSERT_TRUE((*log)->close());
  }
  // Reopened (recovery reads the rewritten segments): the same records. The first segment's
  // indexes are gone, as after a crash between their removal and the rename.
  std::filesystem::remove(testing::segment_path(dir.path(), 0, ".index"));
  std::filesystem::remove(testing::segment_path(dir.path(), 0, ".timeindex"));
  auto log = PartitionLog::open(dir.path(), config, ring, fds);
  ASSERT_TRUE(log);
  ASSERT_EQ((*log)->recovery_report().issues.size(), 1u);
  EXPECT_EQ((*log)->recovery_report().issues[0].kind, RecoveryIssue::Kind::kIndexRebuilt);
  auto all = (*log)->read_copy(Offset(0), 1 << 30);
  ASSERT_TRUE(all);
  EXPECT_LT(records_of(*all).size(), 50u + 200u);
  EXPECT_EQ(*(*log)->log_end_offset(), 1000);
  ASSERT_TRUE((*log)->close());
}

}  // namespace
}  // namespace sluice::log
