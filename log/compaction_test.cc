// Log compaction: the pure batch rewrite, the bounded offset map, and passes over a real
// PartitionLog (compact_log; clean_segment and install_cleaned_segment apart).
#include "log/compaction.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <tuple>

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
    if ((*v)->is_control()) continue;
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
  OffsetMap latest(1 << 20);
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

// Kafka's cleaner on transactions: the records of an aborted transaction go, and are never
// taken for a key's latest, so the committed value before them survives; markers stay.
TEST(Compaction, AbortedTransactionsRecordsGoAndNeverHideACommittedValue) {
  std::vector<std::byte> log = keyed_batch(0, 0, 1, 1, 1000);  // k0=v0 at offset 0
  kafka::RecordBatchBuilder txn({.base_offset = 1,
                                 .producer_id = 7,
                                 .producer_epoch = 0,
                                 .base_sequence = 0,
                                 .transactional = true});
  txn.append(1000, as_bytes("k0"), as_bytes("aborted"));
  txn.append(1000, as_bytes("k1"), as_bytes("aborted"));
  auto txn_bytes = *txn.build();
  log.insert(log.end(), txn_bytes.begin(), txn_bytes.end());
  auto marker = kafka::end_txn_marker_batch(7, 0, {.commit = false, .coordinator_epoch = 0}, 1000);
  store_be<int64_t>(marker.data() + kafka::batch_layout::kBaseOffset, 3);
  log.insert(log.end(), marker.begin(), marker.end());
  auto later = keyed_batch(4, 5, 1, 3, 1000);  // k2=v5 at offset 4
  log.insert(log.end(), later.begin(), later.end());

  CompactionOptions options;
  options.now_ms = 2000;
  options.aborted = {{7, 1, 3}};
  OffsetMap latest(1 << 20);
  ASSERT_TRUE(index_keys(log, latest, options.aborted));
  EXPECT_EQ(latest.get(as_bytes("k0")), 0);   // not the aborted record at 1
  EXPECT_EQ(latest.get(as_bytes("k1")), -1);  // only ever written by the aborted transaction
  CompactionStats stats;
  auto out = compact_batches(log, latest, options, stats);
  ASSERT_TRUE(out) << out.error().message;
  auto records = records_of(*out);
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records.find("k0")->second, (std::pair<int64_t, std::string>{0, "v0"}));
  EXPECT_EQ(records.find("k2")->second, (std::pair<int64_t, std::string>{4, "v5"}));
  EXPECT_EQ(stats.records_removed, 2u);
  // Every offset is still spanned, the marker included.
  auto spans = spans_of(*out);
  ASSERT_EQ(spans.size(), 4u);
  EXPECT_EQ(spans[1], (std::pair<int64_t, int64_t>{1, 2}));
  EXPECT_EQ(spans[2], (std::pair<int64_t, int64_t>{3, 3}));

  // Without the aborted list the aborted record would be k0's latest and v0 would go.
  OffsetMap blind(1 << 20);
  ASSERT_TRUE(index_keys(log, blind));
  EXPECT_EQ(blind.get(as_bytes("k0")), 1);
}

// A transactional batch of `producer` at `base` with one record per key.
std::vector<std::byte> txn_batch(int64_t base, int64_t producer, int32_t sequence,
                                 const std::vector<std::string>& keys, int64_t ts = 1000) {
  kafka::RecordBatchBuilder b({.base_offset = base,
                               .producer_id = producer,
                               .producer_epoch = 0,
                               .base_sequence = sequence,
                               .transactional = true});
  for (const std::string& k : keys) b.append(ts, as_bytes(k), as_bytes("txn"));
  return *b.build();
}

std::vector<std::byte> marker_at(int64_t offset, int64_t producer, bool commit, int64_t ts = 1000) {
  auto m = kafka::end_txn_marker_batch(producer, 0, {.commit = commit, .coordinator_epoch = 0}, ts);
  store_be<int64_t>(m.data() + kafka::batch_layout::kBaseOffset, offset);
  kafka::update_crc(m);
  return m;
}

struct BatchHead {
  int64_t base, last, producer;
  bool transactional, control;
  int32_t records;
  bool operator==(const BatchHead&) const = default;
};
std::ostream& operator<<(std::ostream& os, const BatchHead& b) {
  return os << "[" << b.base << "-" << b.last << " pid " << b.producer
            << (b.transactional ? " txn" : "") << (b.control ? " control" : "") << " " << b.records
            << "]";
}
std::vector<BatchHead> heads_of(Bytes bytes) {
  std::vector<BatchHead> out;
  kafka::BatchIterator it(bytes);
  for (auto v = it.next(); v && *v; v = it.next()) {
    const auto& b = **v;
    out.push_back({b.base_offset(), b.last_offset(), b.producer_id(), b.is_transactional(),
                   b.is_control(), b.record_count()});
  }
  return out;
}

// Kafka's cleaner removes a transaction marker once no batch of its transaction is left and
// delete.retention.ms passed. Here (CompactionOptions::producers) a pass first takes the
// transaction mark off the producer's emptied batches, and a later pass, seeing none of its
// batches transactional, removes the marker: a pass whose earlier segment did not install can
// never leave a transactional batch without its marker (a replay would take its transaction
// for open for good). A producer's last batch stays (its sequence), emptied ones merge.
TEST(Compaction, TransactionMarkersGoAPassAfterTheirBatches) {
  std::vector<std::byte> log;
  auto add = [&log](const std::vector<std::byte>& b) { log.insert(log.end(), b.begin(), b.end()); };
  add(txn_batch(0, 7, 0, {"k0", "k1"}));  // 0-1: producer 7, committed at 2
  add(marker_at(2, 7, true));
  add(keyed_batch(3, 0, 2, 2, 1000));  // 3-4: k0, k1 again: 0-1 lose both records
  add(txn_batch(5, 8, 0, {"k2"}));     // 5: producer 8's last batch, aborted at 6
  add(marker_at(6, 8, false));
  add(txn_batch(7, 7, 2, {"k3"}));  // 7: producer 7's last batch, committed at 8
  add(marker_at(8, 7, true));
  add(keyed_batch(9, 0, 1, 1, 1000));  // 9: k0 again

  CompactionOptions options;
  options.now_ms = 1'000'000;
  options.delete_retention_ms = 1000;
  options.aborted = {{8, 5, 6}};
  options.producers = CompactionOptions::Producers{{{7, 7}, {8, 5}}, {}};
  OffsetMap latest(1 << 20);
  ASSERT_TRUE(index_keys(log, latest, options.aborted));
  CompactionStats first;
  auto once = compact_batches(log, latest, options, first);
  ASSERT_TRUE(once) << once.error().message;
  // Pass 1: 0-1 emptied, not producer 7's last batch: merges, plain; 5 emptied (aborted), its
  // producer's last: stays, no longer transactional; every marker stays.
  EXPECT_EQ(heads_of(*once), (std::vector<BatchHead>{{0, 1, -1, false, false, 0},
                                                     {2, 2, 7, true, true, 1},
                                                     {3, 4, -1, false, false, 1},
                                                     {5, 5, 8, false, false, 0},
                                                     {6, 6, 8, true, true, 1},
                                                     {7, 7, 7, true, false, 1},
                                                     {8, 8, 7, true, true, 1},
                                                     {9, 9, -1, false, false, 1}}));
  EXPECT_EQ(first.markers_removed, 0u);
  // Pass 2: markers 2 and 6 go (no transactional batch of theirs is left), merging into the
  // empty runs; 8 stays (7 still holds k3).
  OffsetMap again_map(1 << 20);
  ASSERT_TRUE(index_keys(*once, again_map, options.aborted));
  CompactionStats second;
  auto twice = compact_batches(*once, again_map, options, second);
  ASSERT_TRUE(twice) << twice.error().message;
  EXPECT_EQ(heads_of(*twice), (std::vector<BatchHead>{{0, 2, -1, false, false, 0},
                                                      {3, 4, -1, false, false, 1},
                                                      {5, 5, 8, false, false, 0},
                                                      {6, 6, -1, false, false, 0},
                                                      {7, 7, 7, true, false, 1},
                                                      {8, 8, 7, true, true, 1},
                                                      {9, 9, -1, false, false, 1}}));
  EXPECT_EQ(second.markers_removed, 2u);
  EXPECT_EQ(records_of(*twice), records_of(*once));
  // Pass 3 changes nothing.
  CompactionStats third;
  auto thrice = compact_batches(*twice, again_map, options, third);
  ASSERT_TRUE(thrice);
  EXPECT_EQ(*thrice, *twice);
  EXPECT_EQ(third.batches_converted, 0u);

  // A marker younger than delete.retention.ms stays, and so does one the options keep (a
  // producer's latest epoch-raising marker); without `producers`, everything stays as before.
  CompactionOptions young = options;
  young.now_ms = 1500;
  CompactionStats s1;
  auto kept_young = compact_batches(*once, again_map, young, s1);
  ASSERT_TRUE(kept_young);
  EXPECT_EQ(s1.markers_removed, 0u);
  CompactionOptions pinned = options;
  pinned.producers->kept_markers = {2, 6};
  CompactionStats s2;
  ASSERT_TRUE(compact_batches(*once, again_map, pinned, s2));
  EXPECT_EQ(s2.markers_removed, 0u);
  // A producer the table knows without its last batch (-1): each of its batches is kept as
  // if it were the last.
  CompactionOptions unsure = options;
  unsure.producers->last_batch = {{7, -1}, {8, 5}};
  CompactionStats s4;
  auto kept_all = compact_batches(log, latest, unsure, s4);
  ASSERT_TRUE(kept_all);
  EXPECT_EQ(heads_of(*kept_all)[0], (BatchHead{0, 1, 7, false, false, 0}));
  CompactionOptions plain = options;
  plain.producers.reset();
  CompactionStats s3;
  auto old_way = compact_batches(log, latest, plain, s3);
  ASSERT_TRUE(old_way);
  EXPECT_EQ(heads_of(*old_way)[0], (BatchHead{0, 1, 7, true, false, 0}));
  EXPECT_EQ(heads_of(*old_way)[3], (BatchHead{5, 5, 8, true, false, 0}));
}

// The marker's transaction may start in an earlier segment: the pass's MarkerScan carries what
// the earlier segments showed, and a segment cleaned without it removes no marker.
TEST(Compaction, AMarkerWhoseBatchesAreInAnEarlierSegmentWaitsForThem) {
  std::vector<std::byte> seg1 = txn_batch(0, 7, 0, {"k0"});  // producer 7, still holds k0
  std::vector<std::byte> seg2 = marker_at(1, 7, true);
  CompactionOptions options;
  options.now_ms = 1'000'000;
  options.delete_retention_ms = 1000;
  options.producers = CompactionOptions::Producers{{{7, 0}}, {}};
  OffsetMap latest(1 << 20);
  ASSERT_TRUE(index_keys(seg1, latest));
  MarkerScan scan;
  CompactionStats stats;
  ASSERT_TRUE(compact_batches(seg1, latest, options, stats, &scan));
  auto out = compact_batches(seg2, latest, options, stats, &scan);
  ASSERT_TRUE(out);
  EXPECT_EQ(stats.markers_removed, 0u) << "its transaction's batch in segment 1 is left";
  MarkerScan fresh;  // a scan that saw segment 1 without its batch: the marker goes
  auto gone = compact_batches(seg2, latest, options, stats, &fresh);
  ASSERT_TRUE(gone);
  EXPECT_EQ(stats.markers_removed, 1u);
  EXPECT_EQ(heads_of(*gone), (std::vector<BatchHead>{{1, 1, -1, false, false, 0}}));
}

// Random logs of three transactional producers beside plain writes, compacted segment by
// segment over many passes where each rewrite installs only now and then (a pass that did
// not install all its segments). After every pass, read back as a restart would: no
// transactional batch without a later marker of its producer (an open transaction for good),
// offsets contiguous, every key's latest committed value there, each producer's last batch
// there with its producer id. Markers do go. SLUICE_SEED=n replays one seed.
TEST(Compaction, RandomPassesOverTransactionsNeverLeaveABatchWithoutItsMarker) {
  const char* only = std::getenv("SLUICE_SEED");
  const uint64_t first = only ? std::strtoull(only, nullptr, 10) : 1;
  const uint64_t seeds = only ? 1 : std::getenv("SLUICE_LONG") ? 300 : 20;
  for (uint64_t seed = first; seed < first + seeds; ++seed) {
    SCOPED_TRACE("SLUICE_SEED=" + std::to_string(seed));
    std::mt19937_64 rng(seed);
    std::vector<std::vector<std::byte>> batches;
    std::map<int64_t, int64_t> open_at;  // producer -> first offset of its open transaction
    std::map<int64_t, int32_t> sequence;
    std::map<int64_t, int64_t> last_batch;
    std::vector<AbortedRange> aborted;
    // Every keyed write: offset -> (producer or -1, key, value).
    std::map<int64_t, std::tuple<int64_t, std::string, std::string>> written;
    int64_t next = 0;
    int writes = 0;
    auto end_txn = [&](int64_t pid, bool commit) {
      batches.push_back(marker_at(next, pid, commit));
      if (!commit) aborted.push_back({pid, open_at[pid], next});
      open_at.erase(pid);
      ++next;
    };
    for (int step = 0; step < 120; ++step) {
      const int64_t pid = 100 + static_cast<int64_t>(rng() % 3);
      const int action = static_cast<int>(rng() % 10);
      const std::string key = "k" + std::to_string(rng() % 6);
      const std::string value = "v" + std::to_string(writes++);
      if (action < 3) {  // a plain write
        kafka::RecordBatchBuilder b({.base_offset = next});
        b.append(1000, as_bytes(key), as_bytes(value));
        batches.push_back(*b.build());
        written[next] = {-1, key, value};
        ++next;
      } else if (action < 8) {  // a transactional write
        kafka::RecordBatchBuilder b({.base_offset = next,
                                     .producer_id = pid,
                                     .producer_epoch = 0,
                                     .base_sequence = sequence[pid],
                                     .transactional = true});
        b.append(1000, as_bytes(key), as_bytes(value));
        batches.push_back(*b.build());
        open_at.emplace(pid, next);
        written[next] = {pid, key, value};
        last_batch[pid] = next;
        ++sequence[pid];
        ++next;
      } else if (open_at.count(pid)) {
        end_txn(pid, action == 8);
      }
    }
    while (!open_at.empty()) end_txn(open_at.begin()->first, rng() % 2 == 0);
    std::sort(aborted.begin(), aborted.end(), [](const AbortedRange& x, const AbortedRange& y) {
      return std::pair{x.producer_id, x.first_offset} < std::pair{y.producer_id, y.first_offset};
    });
    auto is_aborted = [&aborted](int64_t pid, int64_t offset) {
      return std::any_of(aborted.begin(), aborted.end(), [&](const AbortedRange& a) {
        return a.producer_id == pid && a.first_offset <= offset && offset <= a.last_offset;
      });
    };
    // Each key's latest value in offset order, aborted writes left out (what a read_committed
    // reader ends with, and what compaction must keep).
    std::map<std::string, std::string> committed;
    for (const auto& [offset, w] : written) {
      const auto& [pid, k, v] = w;
      if (pid < 0 || !is_aborted(pid, offset)) committed[k] = v;
    }
    // Segments of a few batches each.
    std::vector<std::vector<std::byte>> segments;
    for (size_t i = 0; i < batches.size();) {
      const size_t n = 1 + rng() % 6;
      std::vector<std::byte> seg;
      for (size_t j = 0; j < n && i < batches.size(); ++j, ++i) {
        seg.insert(seg.end(), batches[i].begin(), batches[i].end());
      }
      segments.push_back(std::move(seg));
    }
    CompactionOptions options;
    options.now_ms = 1'000'000;
    options.delete_retention_ms = 1000;
    options.aborted = aborted;
    options.producers.emplace();
    for (const auto& [pid, base] : last_batch)
      options.producers->last_batch.emplace_back(pid, base);
    auto whole = [&segments] {
      std::vector<std::byte> out;
      for (const auto& seg : segments) out.insert(out.end(), seg.begin(), seg.end());
      return out;
    };
    auto count_markers = [](Bytes log) {
      int n = 0;
      kafka::BatchIterator it(log);
      for (auto v = it.next(); v && *v; v = it.next()) n += (*v)->is_control() ? 1 : 0;
      return n;
    };
    const int markers_before = count_markers(whole());
    for (int pass = 0; pass < 12; ++pass) {
      SCOPED_TRACE("pass " + std::to_string(pass));
      const auto log = whole();
      OffsetMap latest(1 << 20);
      ASSERT_TRUE(index_keys(log, latest, options.aborted));
      MarkerScan scan;
      for (auto& seg : segments) {
        CompactionStats stats;
        auto out = compact_batches(seg, latest, options, stats, &scan);
        ASSERT_TRUE(out) << out.error().message;
        if (pass >= 8 || rng() % 3 != 0) seg = std::move(*out);  // else: not installed
      }
      // Read back as a restart would.
      const auto now = whole();
      std::set<int64_t> open;
      std::map<std::string, std::string> latest_value;
      std::set<int64_t> producer_batches;
      int64_t expect = 0;
      kafka::BatchIterator it(now);
      std::vector<std::byte> scratch;
      for (auto v = it.next(); v && *v; v = it.next()) {
        const auto& b = **v;
        ASSERT_EQ(b.base_offset(), expect);
        expect = b.last_offset() + 1;
        if (b.is_control()) {
          open.erase(b.producer_id());
          continue;
        }
        if (b.is_transactional()) open.insert(b.producer_id());
        if (b.producer_id() >= 0) producer_batches.insert(b.base_offset());
        auto rr = b.records(scratch);
        ASSERT_TRUE(rr);
        for (auto r = rr->next(); r && *r; r = rr->next()) {
          const auto& rec = **r;
          const std::string k(reinterpret_cast<const char*>(rec.key->data()), rec.key->size());
          const std::string val(reinterpret_cast<const char*>(rec.value->data()),
                                rec.value->size());
          if (!b.is_transactional() || !is_aborted(b.producer_id(), b.base_offset())) {
            latest_value[k] = val;
          }
        }
      }
      ASSERT_EQ(expect, next);
      EXPECT_TRUE(open.empty()) << "a transactional batch without its marker, producer "
                                << *open.begin();
      EXPECT_EQ(latest_value, committed);
      for (const auto& [pid, base] : last_batch) {
        EXPECT_TRUE(producer_batches.count(base))
            << "producer " << pid << "'s last batch at " << base;
      }
    }
    EXPECT_LT(count_markers(whole()), markers_before);
  }
}

TEST(Compaction, TombstonesGoOnlyAfterDeleteRetention) {
  std::vector<std::byte> log = keyed_batch(0, 0, 4, 4, 1000);
  auto dead = keyed_batch(4, 0, 2, 4, 5000, /*tombstones=*/true);  // k0, k1 deleted
  log.insert(log.end(), dead.begin(), dead.end());
  OffsetMap latest(1 << 20);
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

TEST(Compaction, CompactLogRewritesClosedSegmentsOfARealLog) {
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
    CompactionStats stats;
    auto r = compact_log(**log, {.now_ms = 2000}, stats);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_TRUE(*r);
    // A second pass finds nothing new to map and nothing to remove.
    CompactionStats again;
    auto r2 = compact_log(**log, {.now_ms = 2000}, again);
    ASSERT_TRUE(r2) << r2.error().message;
    EXPECT_FALSE(*r2);
    EXPECT_EQ(again.segments_rewritten, 0u);
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
    testing::drain(ring);  // the replaced files' removals
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

TEST(OffsetMap, LaterOffsetsWinAndTheBoundHolds) {
  OffsetMap map(24 * 1024);  // 1,024 slots: 768 keys
  EXPECT_EQ(map.max_entries(), 768u);
  EXPECT_EQ(map.get(as_bytes("a")), -1);
  EXPECT_TRUE(map.put(as_bytes("a"), 5));
  EXPECT_TRUE(map.put(as_bytes("a"), 9));
  EXPECT_EQ(map.get(as_bytes("a")), 9);
  EXPECT_EQ(map.size(), 1u);
  int stored = 1;
  for (int i = 0; i < 2000; ++i) stored += map.put(as_bytes("key" + std::to_string(i)), i);
  EXPECT_EQ(stored, 768);
  EXPECT_EQ(map.size(), 768u);
  EXPECT_LE(map.memory_bytes(), 24u * 1024);
  EXPECT_FALSE(map.put(as_bytes("one more"), 1));  // a new key when full: not stored
  EXPECT_TRUE(map.put(as_bytes("a"), 11));  // a key already there still updates when full
  EXPECT_EQ(map.get(as_bytes("a")), 11);
  for (int i = 0; i < 767; ++i) EXPECT_EQ(map.get(as_bytes("key" + std::to_string(i))), i);
  EXPECT_EQ(map.get(as_bytes("key1999")), -1);
  map.clear();
  EXPECT_EQ(map.size(), 0u);
  EXPECT_EQ(map.get(as_bytes("a")), -1);
}

struct RealLog {
  testing::TempDir dir;
  IoRing ring;
  FdCache fds{64};
  LogConfig config;
  std::deque<std::vector<std::byte>> batches;
  std::unique_ptr<PartitionLog> log;
  RealLog() {
    config.segment_bytes = 2048;
    config.preallocate = false;
    auto l = PartitionLog::open(dir.path(), config, ring, fds);
    EXPECT_TRUE(l);
    log = std::move(*l);
  }
  ~RealLog() {
    if (log) {
      testing::drain(ring);  // the replaced files' removals
      EXPECT_TRUE(log->close());
    }
  }
  void append(std::vector<std::byte> batch) {
    batches.push_back(std::move(batch));
    ASSERT_TRUE(testing::append_and_wait(*log, ring, batches.back()));
  }
  std::multimap<std::string, std::pair<int64_t, std::string>> records() {
    auto all = log->read_copy(log->log_start_offset(), 1 << 30);
    EXPECT_TRUE(all);
    return records_of(*all);
  }
};

// A map too small for the log: each pass maps as many keys as fit and the passes go on from
// where the last stopped; the log ends up as with an unbounded map, and at no point is a key's
// tombstone gone while an older value of the key is still there (it would come back).
TEST(Compaction, ABoundedMapTakesSeveralPassesAndNeverResurrectsAKey) {
  RealLog small;
  RealLog large;
  for (RealLog* l : {&small, &large}) {
    // k0..k9 written at 280..289 and deleted right after (290..299), in the same segment;
    // after that only k10..k39.
    for (int b = 0; b < 60; ++b) {
      l->append(keyed_batch(0, b <= 28 ? b * 10 : 10 + b % 3 * 10, 10, 40, 1000));
      if (b == 28) l->append(keyed_batch(0, 0, 10, 40, 1000, /*tombstones=*/true));
    }
    for (int b = 0; b < 30; ++b) l->append(keyed_batch(0, 10 + b % 3 * 10, 10, 40, 1000));
  }
  // The case that matters: a pass whose map ends between a key's value and its tombstone
  // cleans the segment holding both.
  bool same_segment = false;
  for (const ClosedSegment& seg : small.log->closed_segments()) {
    same_segment |= seg.base_offset <= 280 && seg.end_offset >= 300;
  }
  ASSERT_TRUE(same_segment) << "the segment layout changed: move the tombstones";
  const CompactionOptions options{.now_ms = 100000, .delete_retention_ms = 10,
                                  .map_bytes = 24 * 16};  // 16 slots: 12 keys a pass
  int passes = 0;
  while (true) {
    CompactionStats stats;
    const int64_t dirty = small.log->first_dirty_offset();
    auto r = compact_log(*small.log, options, stats);
    ASSERT_TRUE(r) << r.error().message;
    ASSERT_LT(++passes, 1000);
    auto recs = small.records();
    for (int k = 0; k < 10; ++k) {
      auto range = recs.equal_range("k" + std::to_string(k));
      bool tombstone = false;
      for (auto it = range.first; it != range.second; ++it) tombstone |= it->second.second == "<null>";
      if (!tombstone) {
        EXPECT_EQ(range.first, range.second) << "k" << k << " came back after pass " << passes;
      }
    }
    if (!*r && small.log->first_dirty_offset() == dirty) break;  // nothing mapped, nothing gone
  }
  EXPECT_GT(passes, 10);
  CompactionStats stats;
  ASSERT_TRUE(compact_log(*large.log, {.now_ms = 100000, .delete_retention_ms = 10}, stats));
  EXPECT_EQ(small.records(), large.records());
  auto recs = small.records();
  for (int k = 0; k < 10; ++k) EXPECT_EQ(recs.count("k" + std::to_string(k)), 0u) << k;
  EXPECT_EQ(*small.log->log_end_offset(), 910);
}

// A cleaned segment is installed only into the history it was made from: after a truncation
// (even of later segments only: the map may name records that are gone) it is refused and its
// side files go. Side files a crash left behind go when the log opens.
TEST(Compaction, ACleanedSegmentOfAChangedLogIsDiscarded) {
  RealLog l;
  for (int b = 0; b < 60; ++b) l.append(keyed_batch(0, b * 10, 10, 5, 1000));
  const auto closed = l.log->closed_segments();
  ASSERT_GE(closed.size(), 3u);
  const uint64_t history = l.log->history();
  OffsetMap map(1 << 20);
  auto map_end = build_offset_map(closed, 0, map, {.now_ms = 2000});
  ASSERT_TRUE(map_end);
  EXPECT_EQ(*map_end, closed.back().end_offset);
  EXPECT_EQ(map.size(), 5u);
  const size_t before = l.records().size();
  auto first = clean_segment(closed[0], map, *map_end, {.now_ms = 2000});
  ASSERT_TRUE(first && *first);
  EXPECT_LT((*first)->size_bytes, closed[0].size_bytes);
  auto ok = l.log->install_cleaned_segment(**first, history);
  ASSERT_TRUE(ok);
  EXPECT_EQ(*ok, Installed::kInstalled);
  EXPECT_EQ(l.records().size(), before - (*first)->stats.records_removed);
  EXPECT_GT((*first)->stats.records_removed, 0u);

  auto second = clean_segment(closed[1], map, *map_end, {.now_ms = 2000});
  ASSERT_TRUE(second && *second);
  EXPECT_TRUE(std::filesystem::exists((*second)->log_side));
  testing::drain(l.ring);  // the replaced file's removal
  ASSERT_TRUE(l.log->truncate_suffix(Offset(closed[2].base_offset)));
  EXPECT_NE(l.log->history(), history);
  auto refused = l.log->install_cleaned_segment(**second, history);
  ASSERT_TRUE(refused);
  EXPECT_EQ(*refused, Installed::kChanged);
  EXPECT_FALSE(std::filesystem::exists((*second)->log_side));
  EXPECT_FALSE(std::filesystem::exists((*second)->index_side));
  EXPECT_FALSE(std::filesystem::exists((*second)->time_side));

  // Already compacted against this map: nothing would go, so nothing is written.
  auto again = clean_segment(l.log->closed_segments()[0], map, *map_end, {.now_ms = 2000});
  ASSERT_TRUE(again);
  EXPECT_FALSE(*again);
  std::ofstream(closed[0].log_path + ".cleaned") << "partial";
  std::ofstream(closed[0].index_path + ".cleaned") << "partial";
  testing::drain(l.ring);  // the cut segments' removal
  ASSERT_TRUE(l.log->close());
  l.log.reset();
  auto reopened = PartitionLog::open(l.dir.path(), l.config, l.ring, l.fds);
  ASSERT_TRUE(reopened);
  EXPECT_FALSE(std::filesystem::exists(closed[0].log_path + ".cleaned"));
  EXPECT_FALSE(std::filesystem::exists(closed[0].index_path + ".cleaned"));
  l.log = std::move(*reopened);
  EXPECT_EQ(*l.log->log_end_offset(), closed[2].base_offset);
}

// Installing a rewrite frees none of the old segment's blocks on the log's thread: the old
// .log is exchanged with the new one (RENAME_EXCHANGE) and set aside under a name of its own,
// then removed as retention removes a segment, a step at a time through the ring after the
// delay (a rename over it froze the shard for as long as freeing it takes). One left aside by a
// crash goes when the log opens.
TEST(Compaction, TheReplacedLogIsSetAsideAndRemovedThroughTheRing) {
  RealLog l;
  ASSERT_TRUE(l.log->close());
  l.log.reset();
  l.config.segment_bytes = 9 << 20;  // one closed segment of ~9 MiB: past the removal's step
  auto opened = PartitionLog::open(l.dir.path(), l.config, l.ring, l.fds);
  ASSERT_TRUE(opened);
  l.log = std::move(*opened);
  const std::string value(1000, 'x');
  // Stamped now: retention by time (7 days) keeps them through the passes below.
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  for (int b = 0; b < 12; ++b) {
    kafka::RecordBatchBuilder builder({.base_offset = b * 1000});
    for (int i = 0; i < 1000; ++i) {
      const std::string key = "k" + std::to_string(i % 4);
      builder.append(now_ms, as_bytes(key), as_bytes(value));
    }
    l.append(*builder.build());
  }
  const auto closed = l.log->closed_segments();
  ASSERT_EQ(closed.size(), 1u);
  ASSERT_GT(closed[0].size_bytes, 8u << 20);
  OffsetMap map(1 << 20);
  auto map_end = build_offset_map(closed, 0, map, {.now_ms = 2000});
  ASSERT_TRUE(map_end);
  auto cleaned = clean_segment(closed[0], map, *map_end, {.now_ms = 2000});
  ASSERT_TRUE(cleaned && *cleaned);
  auto installed = l.log->install_cleaned_segment(**cleaned, l.log->history());
  ASSERT_TRUE(installed);
  ASSERT_EQ(*installed, Installed::kInstalled);
  const std::string aside = closed[0].log_path + ".1.deleted";
  ASSERT_TRUE(std::filesystem::exists(aside));
  EXPECT_EQ(std::filesystem::file_size(aside), closed[0].size_bytes);  // not freed
  EXPECT_FALSE(std::filesystem::exists((*cleaned)->log_side));
  EXPECT_EQ(std::filesystem::file_size(closed[0].log_path), (*cleaned)->size_bytes);
  // The last value of each key in the segment, and everything after it.
  auto recs = l.records();
  size_t in_first = 0;
  for (const auto& [key, at] : recs) in_first += at.first < closed[0].end_offset ? 1 : 0;
  EXPECT_EQ(in_first, 4u);  // one a key
  EXPECT_EQ(recs.size(), 4u + static_cast<size_t>(12000 - closed[0].end_offset));
  EXPECT_EQ(*l.log->log_end_offset(), 12000);
  // Removed after the delay (12 retention passes), through the ring.
  for (int pass = 0; pass < 11; ++pass) ASSERT_TRUE(l.log->apply_retention());
  testing::drain(l.ring);
  EXPECT_TRUE(std::filesystem::exists(aside));
  ASSERT_TRUE(l.log->apply_retention());
  testing::drain(l.ring);  // its open, the cuts and the unlink, each queued by the one before
  EXPECT_TRUE(l.log->idle());
  EXPECT_FALSE(std::filesystem::exists(aside));
  EXPECT_TRUE(l.records() == recs);

  std::ofstream(closed[0].log_path + ".7.deleted") << "left by a crash";
  ASSERT_TRUE(l.log->close());
  l.log.reset();
  auto reopened = PartitionLog::open(l.dir.path(), l.config, l.ring, l.fds);
  ASSERT_TRUE(reopened);
  l.log = std::move(*reopened);
  EXPECT_FALSE(std::filesystem::exists(closed[0].log_path + ".7.deleted"));
  EXPECT_TRUE(l.records() == recs);
}

// A pass takes the closed segments from the log start up to the first one not ready (damaged
// here; in a broker also one just closed whose last sync has not completed). Skipping it and
// going on, a pass mapped a tombstone beyond it and, once the tombstone expired, removed it
// while the skipped segment still held an older value of the key, which then came back
// (groups.compaction saw 200 such records when a segment closed during a pass).
TEST(Compaction, APassStopsAtTheFirstClosedSegmentNotReady) {
  RealLog l;
  for (int b = 0; b < 30; ++b) l.append(keyed_batch(0, b * 10, 10, 5, 1000));  // k0..k4
  l.append(keyed_batch(0, 0, 1, 5, 1000, /*tombstones=*/true));                // k0 at 300
  for (int b = 0; b < 40; ++b) l.append(keyed_batch(0, 1, 4, 5, 1000));        // k1..k4
  const auto closed = l.log->closed_segments();
  ASSERT_GE(closed.size(), 3u);
  ASSERT_LE(closed[1].end_offset, 300) << "the segment layout changed: move the tombstone";
  // Damage in the second segment's last batch: the batches before it, with values of k0, stay
  // readable.
  testing::flip_byte(closed[1].log_path, closed[1].size_bytes - 5);
  std::vector<RecoveryIssue> found;
  for (int step = 0; step < 1000 && found.empty(); ++step) {
    auto r = l.log->scrub(1 << 20);
    ASSERT_TRUE(r) << r.error().message;
    found = r->issues;
    testing::drain(l.ring);
  }
  ASSERT_EQ(found.size(), 1u);
  ASSERT_EQ(found[0].segment_base_offset, closed[1].base_offset);
  const auto ready = l.log->closed_segments();
  ASSERT_FALSE(ready.empty());
  EXPECT_EQ(ready.size(), 1u);
  EXPECT_EQ(ready[0].base_offset, closed[0].base_offset);
  for (int pass = 0; pass < 3; ++pass) {
    CompactionStats stats;
    auto r = compact_log(*l.log, {.now_ms = 100000, .delete_retention_ms = 10}, stats);
    ASSERT_TRUE(r) << r.error().message;
  }
  EXPECT_LE(l.log->first_dirty_offset(), closed[1].base_offset);
  auto damaged = l.log->read_copy(Offset(closed[1].base_offset), 1 << 20);
  ASSERT_TRUE(damaged) << damaged.error().message;
  ASSERT_GT(records_of(*damaged).count("k0"), 0u);
  auto after = l.log->read_copy(Offset(closed[1].end_offset), 1 << 30);
  ASSERT_TRUE(after) << after.error().message;
  const auto recs = records_of(*after);
  const auto [first, end] = recs.equal_range("k0");  // in offset order
  ASSERT_NE(first, end) << "the tombstone of k0 went while an older value remained";
  EXPECT_EQ(std::prev(end)->second.first, 300);
  EXPECT_EQ(std::prev(end)->second.second, "<null>");
}

// Seeded model check of passes over a real log: random keyed, keyless and tombstone records,
// passes with maps of 6 keys to unbounded and random clocks, restarts between. After every
// pass, each record still there is the one written at its offset, keyless records and each
// key's latest record all stay, and a deleted key shows nothing older than its tombstone (its
// tombstone may go once expired, and then the key must be gone entirely). A failure names its
// seed; SLUICE_SEED=<n> runs that seed alone, SLUICE_LONG=1 runs 200 seeds instead of 12.
TEST(Compaction, RandomPassesKeepEveryKeysLatestAndResurrectNothing) {
  struct Written {
    std::string key;  // "" for a keyless record
    bool has_key = true;
    std::optional<std::string> value;
  };
  const char* only = std::getenv("SLUICE_SEED");
  const uint64_t first = only ? std::strtoull(only, nullptr, 10) : 1;
  const uint64_t seeds = only ? 1 : std::getenv("SLUICE_LONG") ? 200 : 12;
  CompactionStats total;  // over every seed: the passes did remove records and tombstones
  int restarts = 0;
  for (uint64_t seed = first; seed < first + seeds; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed) + " (SLUICE_SEED=" + std::to_string(seed) +
                 " replays it)");
    std::mt19937_64 rng(seed);
    auto pick = [&rng](uint64_t n) { return static_cast<int>(rng() % n); };
    RealLog l;
    std::map<int64_t, Written> written;     // offset -> what was written there
    std::map<std::string, int64_t> latest;  // key -> offset of its latest record
    const int keys = 3 + pick(28);
    int64_t clock = 1000;
    for (int round = 0; round < 400; ++round) {
      clock += pick(20);
      const int64_t base = *l.log->log_end_offset();
      kafka::RecordBatchBuilder b({.base_offset = base});
      std::vector<std::string> strings;
      const int count = 1 + pick(8);
      strings.reserve(2 * static_cast<size_t>(count));
      for (int i = 0; i < count; ++i) {
        Written w;
        w.has_key = pick(10) != 0;
        w.key = w.has_key ? "k" + std::to_string(pick(static_cast<uint64_t>(keys))) : "";
        if (!w.has_key || pick(7) != 0) w.value = "v" + std::to_string(base + i);
        strings.push_back(w.key);
        const Bytes key = as_bytes(strings.back());
        strings.push_back(w.value.value_or(""));
        const Bytes value = as_bytes(strings.back());
        b.append(clock, w.has_key ? std::optional<Bytes>(key) : std::nullopt,
                 w.value ? std::optional<Bytes>(value) : std::nullopt);
        if (w.has_key) latest[w.key] = base + i;
        written[base + i] = std::move(w);
      }
      l.append(*b.build());
      if (pick(12) == 0) {
        const uint64_t map_bytes[] = {24 * 8, 24 * 16, 1 << 20};
        const int64_t retention[] = {0, 40, 5000};
        CompactionOptions options{.now_ms = clock + pick(200) - 100,
                                  .delete_retention_ms = retention[pick(3)],
                                  .map_bytes = map_bytes[pick(3)]};
        CompactionStats stats;
        auto r = compact_log(*l.log, options, stats);
        ASSERT_TRUE(r) << r.error().message;
        total.add(stats);
        testing::drain(l.ring);
        // What the log holds now, against what was written.
        auto all = l.log->read_copy(l.log->log_start_offset(), 1 << 30);
        ASSERT_TRUE(all) << all.error().message;
        std::map<std::string, std::vector<int64_t>> seen;  // key -> offsets, in order
        std::set<int64_t> offsets;
        kafka::BatchIterator it(*all);
        std::vector<std::byte> scratch;
        for (auto v = it.next(); v && *v; v = it.next()) {
          auto rr = (*v)->records(scratch);
          ASSERT_TRUE(rr);
          for (auto rec = rr->next(); rec && *rec; rec = rr->next()) {
            const int64_t offset = (*v)->base_offset() + (**rec).offset_delta;
            auto w = written.find(offset);
            ASSERT_NE(w, written.end()) << "offset " << offset << " was never written";
            const auto& got = **rec;
            ASSERT_EQ(got.key.has_value(), w->second.has_key) << offset;
            if (got.key) {
              ASSERT_EQ(
                  std::string(reinterpret_cast<const char*>(got.key->data()), got.key->size()),
                  w->second.key)
                  << offset;
            }
            ASSERT_EQ(got.value.has_value(), w->second.value.has_value()) << offset;
            if (got.value) {
              ASSERT_EQ(
                  std::string(reinterpret_cast<const char*>(got.value->data()), got.value->size()),
                  *w->second.value)
                  << offset;
            }
            offsets.insert(offset);
            if (got.key) seen[w->second.key].push_back(offset);
          }
        }
        for (const auto& [offset, w] : written) {
          if (!w.has_key) {
            EXPECT_TRUE(offsets.count(offset)) << "keyless record " << offset;
          }
        }
        for (const auto& [key, offset] : latest) {
          const bool deleted = !written[offset].value.has_value();
          const auto& had = seen[key];
          if (!deleted) {
            ASSERT_FALSE(had.empty()) << key << "'s latest value at " << offset << " is gone";
            EXPECT_EQ(had.back(), offset) << key << ": the latest record is not the last";
          } else if (!had.empty()) {
            EXPECT_EQ(had.back(), offset) << key << " came back after its tombstone";
          }
        }
        EXPECT_EQ(*l.log->log_end_offset(), base + count);
      }
      if (pick(60) == 0) {  // a restart: the log opens what the passes left
        testing::drain(l.ring);
        ASSERT_TRUE(l.log->close());
        l.log.reset();
        auto reopened = PartitionLog::open(l.dir.path(), l.config, l.ring, l.fds);
        ASSERT_TRUE(reopened) << reopened.error().message;
        l.log = std::move(*reopened);
        ++restarts;
      }
    }
  }
  if (!only) {
    EXPECT_GT(total.segments_rewritten, 50u);
    EXPECT_GT(total.tombstones_removed, 50u);
    EXPECT_GT(restarts, 20);
  }
  std::cout << total.segments_rewritten << " segments rewritten, " << total.records_removed
            << " records and " << total.tombstones_removed << " tombstones removed, " << restarts
            << " restarts\n";
}

// A segment compaction emptied holds one empty batch. A Fetch older than the window
// (read_async, which stops at the end of the first segment that gave something) goes on past
// such segments to the first record: answered with empty batches only, kafka-python 2.0.2's
// consumer fails (IndexError in _parse_fetched_data) and never reads on.
TEST(Compaction, AColdReadGoesOnPastSegmentsCompactionEmptied) {
  RealLog l;
  for (int b = 0; b < 80; ++b) l.append(keyed_batch(0, b * 5, 5, 5, 1000));  // k0..k4 each time
  CompactionStats stats;
  ASSERT_TRUE(compact_log(*l.log, {.now_ms = 2000}, stats));
  const auto closed = l.log->closed_segments();
  ASSERT_GE(closed.size(), 3u);
  // Every closed segment but the last (which the pass mapped last) is one empty batch now.
  for (size_t i = 0; i + 1 < closed.size(); ++i) {
    const ClosedSegment& seg = closed[i];
    auto bytes = l.log->read_copy(Offset(seg.base_offset), 1 << 20, Offset(seg.end_offset));
    ASSERT_TRUE(bytes);
    EXPECT_TRUE(records_of(*bytes).empty()) << "segment " << seg.base_offset;
  }
  auto got = testing::read_async_wait(*l.log, l.ring, 0, 1 << 20, *l.log->log_end_offset());
  ASSERT_TRUE(got) << got.error().message;
  const ReadResult& r = *got;
  auto bytes_of = [](const FileRange& range) {
    std::vector<std::byte> bytes(range.length);
    EXPECT_EQ(
        ::pread(range.file->fd(), bytes.data(), range.length, static_cast<off_t>(range.position)),
        static_cast<ssize_t>(range.length));
    return bytes;
  };
  EXPECT_GT(*r.next_offset, closed[closed.size() - 2].end_offset)
      << "the answer holds only empty batches";
  // The ranges it marks as empty are; the one after them (what a Fetch sends) has records.
  ASSERT_LT(r.empty_ranges, r.ranges.size());
  EXPECT_EQ(r.empty_ranges, closed.size() - 1);
  for (size_t i = 0; i < r.empty_ranges; ++i) {
    EXPECT_TRUE(records_of(bytes_of(r.ranges[i])).empty()) << "range " << i;
  }
  EXPECT_FALSE(records_of(bytes_of(r.ranges[r.empty_ranges])).empty());
  // read() on this thread marks them too.
  auto now = l.log->read(Offset(0), 1 << 20);
  ASSERT_TRUE(now);
  EXPECT_EQ(now->empty_ranges, closed.size() - 1);
  // The answer's first batch is in the last closed segment (where read-ahead goes on from).
  EXPECT_GE(*r.answer_first_offset, closed.back().base_offset);
  EXPECT_LT(*r.answer_first_offset, closed.back().end_offset);
  EXPECT_EQ(&r.answer(), &r.ranges[r.empty_ranges]);
}

// A Fetch whose max bytes is smaller than the first batch with records still gets that batch,
// as Kafka's does, when batches compaction emptied come before it (their bytes do not count).
TEST(Compaction, TheFirstRecordsPastEmptiedSegmentsComeWhateverTheirSize) {
  RealLog l;
  for (int b = 0; b < 80; ++b) l.append(keyed_batch(0, b * 5, 5, 5, 1000));
  CompactionStats stats;
  ASSERT_TRUE(compact_log(*l.log, {.now_ms = 2000}, stats));
  const auto closed = l.log->closed_segments();
  ASSERT_GE(closed.size(), 3u);
  constexpr uint64_t kSmall = 100;  // more than an empty batch, less than one with records
  auto check = [&](const ReadResult& r, const char* how) {
    ASSERT_LT(r.empty_ranges, r.ranges.size()) << how << ": only emptied batches";
    EXPECT_GT(r.answer().length, kSmall) << how;
    EXPECT_GT(*r.next_offset, closed[closed.size() - 2].end_offset) << how;
    std::vector<std::byte> bytes(r.answer().length);
    ASSERT_EQ(::pread(r.answer().file->fd(), bytes.data(), bytes.size(),
                      static_cast<off_t>(r.answer().position)),
              static_cast<ssize_t>(bytes.size()));
    EXPECT_FALSE(records_of(bytes).empty()) << how;
  };
  auto cold = testing::read_async_wait(*l.log, l.ring, 0, kSmall, *l.log->log_end_offset());
  ASSERT_TRUE(cold) << cold.error().message;
  check(*cold, "read_async");
  auto now = l.log->read(Offset(0), kSmall);
  ASSERT_TRUE(now) << now.error().message;
  check(*now, "read");
}

// A damaged closed segment is an error for the pass (never copied into a rewrite as good).
TEST(Compaction, ADamagedSegmentFailsThePass) {
  RealLog l;
  for (int b = 0; b < 40; ++b) l.append(keyed_batch(0, b * 10, 10, 5, 1000));
  const auto closed = l.log->closed_segments();
  ASSERT_GT(closed.size(), 1u);
  {
    std::fstream f(closed[0].log_path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(200);
    f.put('\x5a');
  }
  OffsetMap map(1 << 20);
  auto map_end = build_offset_map(closed, 0, map, {});
  ASSERT_FALSE(map_end);
  EXPECT_EQ(map_end.error().code, LogErrc::kCorrupt);
  map.clear();
  ASSERT_TRUE(build_offset_map({closed[1]}, closed[1].base_offset, map, {}));
  auto cleaned = clean_segment(closed[0], map, closed[1].end_offset, {});
  ASSERT_FALSE(cleaned);
  EXPECT_EQ(cleaned.error().code, LogErrc::kCorrupt);
  EXPECT_FALSE(std::filesystem::exists(closed[0].log_path + ".cleaned"));
  // A base offset is outside the CRC: one that does not follow on is damage too.
  {
    std::fstream f(closed[1].log_path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(7);  // the low byte of the first batch's base offset
    f.put('\x7f');
  }
  map.clear();
  auto shifted = build_offset_map({closed[1]}, closed[1].base_offset, map, {});
  ASSERT_FALSE(shifted);
  EXPECT_EQ(shifted.error().code, LogErrc::kCorrupt);
}

}  // namespace
}  // namespace sluice::log
