#include "broker/producer_state.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "log/compaction.h"
#include "protocol/record_batch.h"

namespace sluice::broker {
namespace {

using Verdict = SequenceCheck::Verdict;
using kafka::ErrorCode;

// A log compacted until its transaction markers went (log/compaction.h, with the producers'
// table's view) replays into no open transaction, and keeps each producer's last sequence:
// the emptied transactional batches lost their transaction mark before their markers went.
TEST(ProducerState, AReplayOfALogCompactedPastItsMarkersOpensNoTransaction) {
  auto bytes = [](const std::string& s) {
    return Bytes(reinterpret_cast<const std::byte*>(s.data()), s.size());
  };
  std::vector<std::byte> log;
  auto add = [&log](const std::vector<std::byte>& b) { log.insert(log.end(), b.begin(), b.end()); };
  {
    kafka::RecordBatchBuilder txn({.base_offset = 0,
                                   .producer_id = 7,
                                   .producer_epoch = 0,
                                   .base_sequence = 0,
                                   .transactional = true});
    txn.append(1000, bytes("k"), bytes("old"));
    txn.append(1000, bytes("j"), bytes("old"));
    add(*txn.build());  // 0-1
    auto marker = kafka::end_txn_marker_batch(7, 0, {.commit = true, .coordinator_epoch = 0}, 1000);
    store_be<int64_t>(marker.data() + kafka::batch_layout::kBaseOffset, 2);
    kafka::update_crc(marker);
    add(marker);  // 2
    kafka::RecordBatchBuilder plain({.base_offset = 3});
    plain.append(1000, bytes("k"), bytes("new"));
    plain.append(1000, bytes("j"), bytes("new"));
    add(*plain.build());  // 3-4: both keys again
  }
  auto replay = [](Bytes batches) {
    ProducerStateTable t;
    kafka::BatchIterator it(batches);
    for (auto v = it.next(); v && *v; v = it.next()) t.record_batch(**v);
    t.set_floor(5);
    return t;
  };
  log::CompactionOptions options;
  options.now_ms = 1'000'000;
  options.delete_retention_ms = 1000;
  options.producers = log::CompactionOptions::Producers{{{7, 0}}, {}};  // 0: producer 7's last
  std::vector<std::byte> compacted = log;
  uint64_t markers = 0;
  for (int pass = 0; pass < 3; ++pass) {
    log::OffsetMap latest(1 << 20);
    ASSERT_TRUE(log::index_keys(compacted, latest));
    log::CompactionStats stats;
    auto out = log::compact_batches(compacted, latest, options, stats);
    ASSERT_TRUE(out) << out.error().message;
    compacted = std::move(*out);
    markers += stats.markers_removed;
    // After every pass, as after a restart at any point: no transaction open.
    const ProducerStateTable t = replay(compacted);
    EXPECT_EQ(t.txns().last_stable_offset(5), 5) << "pass " << pass;
    ASSERT_NE(t.find(7), nullptr);
    EXPECT_EQ(t.find(7)->last_sequence, 1) << "pass " << pass;
    EXPECT_EQ(t.check(7, 0, 2, 1).verdict, Verdict::kAppend);
    EXPECT_EQ(t.check(7, 0, 0, 2).verdict, Verdict::kDuplicate);
  }
  EXPECT_EQ(markers, 1u);
  kafka::BatchIterator it(compacted);
  int controls = 0;
  for (auto v = it.next(); v && *v; v = it.next()) controls += (*v)->is_control() ? 1 : 0;
  EXPECT_EQ(controls, 0);
}

TEST(ProducerState, FirstBatchOfAnUnknownProducerIsAccepted) {
  ProducerStateTable t;
  EXPECT_EQ(t.check(7, 0, 0, 5).verdict, Verdict::kAppend);
  EXPECT_EQ(t.check(7, 0, 42, 5).verdict, Verdict::kAppend);  // Kafka 3.8 accepts any
}

TEST(ProducerState, InOrderSequencesAppendAndRetriesAreDuplicates) {
  ProducerStateTable t;
  t.record(7, 0, 0, 5, 100);  // seq 0..4 at offset 100
  t.record(7, 0, 5, 3, 105);  // seq 5..7
  EXPECT_EQ(t.check(7, 0, 8, 2).verdict, Verdict::kAppend);
  auto dup = t.check(7, 0, 0, 5);
  EXPECT_EQ(dup.verdict, Verdict::kDuplicate);
  EXPECT_EQ(dup.duplicate_base_offset, 100);
  EXPECT_EQ(t.check(7, 0, 5, 3).duplicate_base_offset, 105);
}

TEST(ProducerState, GapsAndOldEpochsAreRejected) {
  ProducerStateTable t;
  t.record(7, 1, 0, 5, 0);
  auto gap = t.check(7, 1, 6, 1);
  EXPECT_EQ(gap.verdict, Verdict::kReject);
  EXPECT_EQ(gap.error, ErrorCode::kOutOfOrderSequenceNumber);
  EXPECT_EQ(t.check(7, 0, 5, 1).error, ErrorCode::kInvalidProducerEpoch);
  EXPECT_EQ(t.check(7, 2, 3, 1).error, ErrorCode::kOutOfOrderSequenceNumber);  // new epoch: seq 0
  EXPECT_EQ(t.check(7, 2, 0, 1).verdict, Verdict::kAppend);
  EXPECT_EQ(t.check(7, 1, -1, 1).error, ErrorCode::kInvalidRecord);
}

TEST(ProducerState, OnlyTheLastFiveBatchesAreRemembered) {
  ProducerStateTable t;
  for (int i = 0; i < 7; ++i) t.record(9, 0, i, 1, 1000 + i);
  EXPECT_EQ(t.find(9)->batches.size(), kProducerBatchesRetained);
  EXPECT_EQ(t.check(9, 0, 6, 1).verdict, Verdict::kDuplicate);
  EXPECT_EQ(t.check(9, 0, 2, 1).verdict, Verdict::kDuplicate);
  EXPECT_EQ(t.check(9, 0, 1, 1).verdict, Verdict::kReject);  // forgotten: out of order
}

// What a rebuild from the log compares by: the epoch, the last sequence and the window of
// batches a retry is matched against (the last five of the epoch's run at the back).
struct Window {
  int16_t epoch;
  int32_t last_sequence;
  std::vector<std::pair<int32_t, int64_t>> batches;  // first sequence, base offset; newest first
  bool operator==(const Window&) const = default;
};

Window window_of(const ProducerEntry& e) {
  Window w{e.epoch, e.last_sequence, {}};
  for (auto b = e.batches.rbegin();
       b != e.batches.rend() && b->epoch == e.epoch && w.batches.size() < kProducerBatchesRetained;
       ++b) {
    w.batches.emplace_back(b->first_sequence, b->base_offset);
  }
  return w;
}

TEST(ProducerState, ACutAboveTheFloorLeavesWhatARebuildFromTheLogWouldHold) {
  // Random appends of a few producers (epochs bumped now and then), a floor that rises behind
  // the end, and cuts anywhere at or above it; after each cut the table must equal one
  // rebuilt from the batches left, and its memory stays bounded by what is above the floor.
  for (uint32_t seed = 1; seed <= 300; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    auto pick = [&rng](int64_t lo, int64_t hi) {  // uniform in [lo, hi]
      return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
    };
    struct Stored {
      int64_t pid;
      int16_t epoch;
      int32_t seq;
      int32_t count;
      int64_t base;
    };
    std::vector<Stored> log;
    int64_t end = 0, floor = 0;
    std::map<int64_t, std::pair<int16_t, int32_t>> next;  // pid: epoch, sequence
    ProducerStateTable table;
    table.set_floor(INT64_MIN);
    table.set_floor(0);
    for (int step = 0; step < 400; ++step) {
      const int64_t op = pick(0, 99);
      if (op < 75) {
        const int64_t pid = pick(1, 4);
        auto& [epoch, seq] = next[pid];
        if (pick(0, 29) == 0) {
          ++epoch;
          seq = 0;
        }
        const auto count = static_cast<int32_t>(pick(1, 3));
        log.push_back({pid, epoch, seq, count, end});
        table.record(pid, epoch, seq, count, end);
        seq += count;
        end += count;
      } else if (op < 90) {
        floor = pick(floor, end);
        table.set_floor(floor);
      } else {
        // A cut at a batch start at or above the floor (or at the end).
        std::vector<int64_t> starts{end};
        for (const Stored& b : log) {
          if (b.base >= floor) starts.push_back(b.base);
        }
        const int64_t at = starts[static_cast<size_t>(pick(0, int64_t(starts.size()) - 1))];
        while (!log.empty() && log.back().base >= at) log.pop_back();
        end = at;
        table.cut(0, end);
        next.clear();
        for (const Stored& b : log) next[b.pid] = {b.epoch, b.seq + b.count};
      }
      ProducerStateTable rebuilt;
      for (const Stored& b : log) rebuilt.record(b.pid, b.epoch, b.seq, b.count, b.base);
      ASSERT_EQ(table.size(), rebuilt.size()) << "step " << step;
      for (int64_t pid = 1; pid <= 4; ++pid) {
        const ProducerEntry* want = rebuilt.find(pid);
        const ProducerEntry* have = table.find(pid);
        ASSERT_EQ(want == nullptr, have == nullptr) << "step " << step << " producer " << pid;
        if (!want) continue;
        ASSERT_TRUE(window_of(*have) == window_of(*want)) << "step " << step << " producer " << pid;
        // Kept: the window, and only batches above the floor besides (they could be cut).
        size_t above = 0;
        for (const ProducerBatch& b : have->batches) above += b.base_offset >= floor ? 1 : 0;
        ASSERT_LE(have->batches.size(), above + kProducerBatchesRetained)
            << "step " << step << " producer " << pid;
      }
    }
  }
}

TEST(ProducerState, WithoutAFloorACutMayNotBringBackWhatWasLetGo) {
  // The default floor (no cut expected) keeps five: a cut then leaves fewer, which is why a
  // replicated partition's table has its floor set to the high watermark.
  ProducerStateTable t;
  for (int i = 0; i < 8; ++i) t.record(9, 0, i, 1, i);
  t.cut(0, 5);
  ASSERT_NE(t.find(9), nullptr);
  EXPECT_EQ(t.find(9)->batches.size(), 2u);  // offsets 3, 4: the five kept were 3-7
  EXPECT_EQ(t.find(9)->last_sequence, 4);
  ProducerStateTable kept;
  kept.set_floor(0);
  for (int i = 0; i < 8; ++i) kept.record(9, 0, i, 1, i);
  kept.cut(0, 5);
  EXPECT_EQ(kept.find(9)->batches.size(), 5u);  // offsets 0-4, as a rebuild finds
  EXPECT_EQ(kept.check(9, 0, 0, 1).duplicate_base_offset, 0);
  kept.record(9, 0, 5, 1, 5);
  EXPECT_EQ(kept.find(9)->batches.size(), 6u);  // a cut at 5 would bring 0 back
  kept.set_floor(6);
  EXPECT_EQ(kept.find(9)->batches.size(), 5u);  // offsets 1-5: 0 can no longer come back
  kept.cut(0, 0);
  EXPECT_EQ(kept.size(), 0u);  // an empty log: nothing left
}

TEST(ProducerState, ACutKeepsAnEpochRaisedByAMarkerItKeeps) {
  // A coordinator fenced producer 9 (an abort marker with epoch 1 at offset 2) after its
  // epoch-0 batches at 0 and 1. A cut that keeps the marker must keep the producer fenced, as a
  // rebuild from the log would; a cut that takes the marker away brings epoch 0 back.
  for (int64_t floor : {int64_t{0}, INT64_MAX}) {
    ProducerStateTable t;
    t.set_floor(floor);
    t.record(9, 0, 0, 1, 0);
    t.record(9, 0, 1, 1, 1);
    t.record_marker(9, 1, 2, false, 0);
    t.record(4, 0, 0, 1, 3);  // another producer's batch, cut below
    t.cut(0, 3);
    ASSERT_NE(t.find(9), nullptr);
    EXPECT_EQ(t.check(9, 0, 2, 1).error, ErrorCode::kInvalidProducerEpoch) << floor;
    EXPECT_EQ(t.check(9, 1, 0, 1).verdict, Verdict::kAppend);
    t.cut(0, 2);
    EXPECT_EQ(t.find(9)->epoch, 0);
    EXPECT_EQ(t.check(9, 0, 2, 1).verdict, Verdict::kAppend);
  }
}

TEST(ProducerState, SequencesWrapAtInt32Max) {
  EXPECT_EQ(next_sequence(INT32_MAX), 0);
  ProducerStateTable t;
  t.record(3, 0, INT32_MAX - 1, 2, 0);  // INT32_MAX-1 .. INT32_MAX
  EXPECT_EQ(t.check(3, 0, 0, 1).verdict, Verdict::kAppend);
  EXPECT_EQ(t.check(3, 0, 1, 1).verdict, Verdict::kReject);
}

}  // namespace
}  // namespace sluice::broker
