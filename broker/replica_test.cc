// The partition Raft driver (Replica) on real segment files: three replicas on one thread,
// their messages delivered in order by a network that can cut a replica off, with crashes that
// reopen a replica from its files (SLUICE_TRACE=1 prints every message delivered). What the
// cluster tests check end to end with real brokers, here one behaviour at a time and fast.
#include "broker/replica.h"

#include <gtest/gtest.h>

#include <fstream>
#include <iterator>

#include <boost/asio/io_context.hpp>
#include <deque>
#include <filesystem>
#include <functional>
#include <thread>

#include "log/fd_cache.h"
#include "broker/producer_state.h"
#include "log/io_ring.h"
#include "protocol/record_batch.h"

namespace sluice::broker {
namespace {

namespace fs = std::filesystem;
using kafka::ErrorCode;

std::vector<std::byte> make_batch(int records, const std::string& tag,
                                  kafka::RecordBatchBuilder::Options options = {}) {
  kafka::RecordBatchBuilder b(options);
  for (int i = 0; i < records; ++i) {
    const std::string v = tag + "-" + std::to_string(i);
    b.append(1000 + i, std::nullopt, as_bytes(std::string_view(v)));
  }
  auto built = b.build();
  EXPECT_TRUE(built.has_value());
  return std::move(*built);
}

struct Node {
  std::unique_ptr<log::PartitionLog> log;
  std::unique_ptr<Replica> replica;
};

// Every case twice: Readies persisted one at a time, and a leader's own batches written
// asynchronously (ReplicaOptions::async_writes).
class Group : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("replica_test_" + std::to_string(::getpid()) + "_" + std::to_string(seq_++));
    fs::remove_all(root_);
    nodes_.resize(3);
    for (int i = 0; i < 3; ++i) open(i);
  }
  void TearDown() override {
    for (int i = 0; i < 3; ++i) close(i);
    fs::remove_all(root_);
  }

  std::string dir(int i) const { return (root_ / ("n" + std::to_string(i)) / "t-0").string(); }

  void open(int i) {
    fs::create_directories(dir(i));
    log::LogConfig lc;
    lc.segment_bytes = 64 << 10;
    auto l = log::PartitionLog::open(dir(i), lc, ring_, fds_);
    ASSERT_TRUE(l.has_value()) << l.error().message;
    nodes_[i].log = std::move(*l);
    ReplicaOptions o;
    o.self = i;
    o.group = 7;
    o.initial_voters = {0, 1, 2};
    o.raft.election_ticks = 10;
    o.raft.heartbeat_ticks = 1;
    o.raft.max_cached_bytes = cached_;
    o.raft.check_quorum = check_quorum_;
    o.async_writes = GetParam();
    ReplicaEvents ev;
    ev.send = [this](uint64_t, std::vector<raft::Message> msgs) {
      for (auto& m : msgs) wire_.push_back(std::move(m));
    };
    ev.on_wake = [this, i] { ++wakes_[i]; };
    // The idempotent producers' table, kept as the broker keeps it.
    ev.on_data = [this, i](Bytes batch) {
      auto view = kafka::RecordBatchView::parse(batch);
      if (!view || view->producer_id() < 0) return;
      producers_[i].record(view->producer_id(), view->producer_epoch(), view->base_sequence(),
                           view->last_offset_delta() + 1, view->base_offset());
    };
    ev.on_truncated = [this, i] {
      producers_[i].cut(*nodes_[i].log->log_start_offset(), *nodes_[i].log->log_end_offset());
    };
    ev.on_commit = [this, i] { producers_[i].set_floor(nodes_[i].replica->high_watermark()); };
    producers_[i] = producer_state_from_log(*nodes_[i].log, 64 << 20, INT64_MIN);
    auto r = Replica::open(dir(i), *nodes_[i].log, ring_, io_, o, std::move(ev));
    ASSERT_TRUE(r.has_value()) << r.error().message;
    nodes_[i].replica = std::move(*r);
  }

  void close(int i) {
    if (!nodes_[i].log) return;
    while (!nodes_[i].log->idle()) {
      ring_.submit();
      ring_.wait();
    }
    nodes_[i].replica.reset();
    ring_.drain();
    (void)nodes_[i].log->close();
    nodes_[i].log.reset();
  }

  // A crash: the replica and log vanish without closing (what was written stays).
  void crash(int i) {
    while (!nodes_[i].log->idle()) {
      ring_.submit();
      ring_.wait();
    }
    nodes_[i].replica.reset();
    ring_.drain();
    nodes_[i].log.reset();
  }

  // One step of time: deliver messages (not to or from cut-off nodes), run I/O, tick.
  void step(bool tick) {
    for (int round = 0; round < 4; ++round) {
      io_.poll();
      ring_.submit();
      ring_.poll_completions();
      std::deque<raft::Message> msgs;
      msgs.swap(wire_);
      for (auto& m : msgs) {
        const int to = *m.to, from = *m.from;
        if (cut_[to] || cut_[from] || !nodes_[to].replica) continue;
        if (getenv("SLUICE_TRACE")) fprintf(stderr, "%s\n", raft::to_string(m).c_str());
        for (const raft::Entry& e : m.entries) file_entries_ += e.data.in_file() ? 1 : 0;
        if (tamper_) tamper_(m);
        nodes_[to].replica->step(std::move(m));
      }
    }
    if (tick) {
      // The I/O handed to the ring completes before time moves on: a tick is the same span
      // however long the disk takes to sync. (Ticks paced by real time let a slow fsync on a
      // loaded machine outlast an election timeout and depose a leader the test relies on.)
      ring_.submit();
      ring_.drain();
      for (auto& n : nodes_) {
        if (n.replica) n.replica->tick();
      }
    }
  }

  void run_until(const std::function<bool()>& done, int ticks = 2000) {
    for (int t = 0; t < ticks; ++t) {
      if (done()) return;
      step(true);
    }
    std::string state;
    for (int i = 0; i < 3; ++i) {
      if (!nodes_[i].replica) continue;
      const auto st = nodes_[i].replica->node().status();
      state += " [" + std::to_string(i) + " " + std::string(raft::to_string(st.role)) + " term " +
               std::to_string(*st.term) + " leader " + std::to_string(*st.leader) + " commit " +
               std::to_string(*st.commit) + " last " + std::to_string(*st.last_index) + " hw " +
               std::to_string(nodes_[i].replica->high_watermark()) + " failed " +
               std::to_string(nodes_[i].replica->failed()) + "]";
    }
    FAIL() << "condition not reached:" << state;
  }

  // The serving leader of the newest term (a deposed one may not know it yet).
  int leader() {
    int best = -1;
    for (int i = 0; i < 3; ++i) {
      if (!nodes_[i].replica || cut_[i] || !nodes_[i].replica->serving()) continue;
      if (best < 0 ||
          nodes_[i].replica->leader_epoch() > nodes_[best].replica->leader_epoch()) {
        best = i;
      }
    }
    return best;
  }

  // Proposes `count` batches of 3 records at the leader; returns their acknowledgements. With
  // a producer id, the batches are an idempotent producer's, from sequence `sequence` on.
  std::shared_ptr<std::vector<std::pair<ErrorCode, int64_t>>> produce(
      int at, int count, const std::string& tag, int64_t producer_id = -1, int32_t sequence = 0) {
    auto acks = std::make_shared<std::vector<std::pair<ErrorCode, int64_t>>>();
    for (int i = 0; i < count; ++i) {
      kafka::RecordBatchBuilder::Options options;
      if (producer_id >= 0) {
        options.producer_id = producer_id;
        options.producer_epoch = 0;
        options.base_sequence = sequence + 3 * i;
      }
      auto batch = std::make_shared<std::vector<std::byte>>(
          make_batch(3, tag + std::to_string(i), options));
      const ErrorCode e = nodes_[at].replica->produce(
          MutableBytes(*batch), -1,
          [acks, batch](ErrorCode c, int64_t base) { acks->emplace_back(c, base); });
      if (e != ErrorCode::kNone) acks->emplace_back(e, -1);
    }
    return acks;
  }

  std::vector<std::string> values(int i) {
    std::vector<std::string> out;
    auto bytes = nodes_[i].log->read_copy(Offset(0), 1 << 30);
    EXPECT_TRUE(bytes.has_value());
    kafka::BatchIterator it(*bytes);
    std::vector<std::byte> scratch;
    int64_t expect = 0;
    while (true) {
      auto v = it.next();
      if (!v || !*v) break;
      EXPECT_EQ((*v)->base_offset(), expect);
      expect = (*v)->last_offset() + 1;
      auto recs = (*v)->records(scratch);
      while (recs) {
        auto r = recs->next();
        if (!r || !*r) break;
        out.emplace_back(as_string_view(*(*r)->value));
      }
    }
    return out;
  }

  static inline int seq_ = 0;
  fs::path root_;
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_ =
      boost::asio::make_work_guard(io_);
  log::IoRing ring_;
  log::FdCache fds_;
  std::vector<Node> nodes_;
  ProducerStateTable producers_[3];  // what each replica's events told it (on_data, on_truncated)
  std::deque<raft::Message> wire_;
  bool cut_[3] = {false, false, false};
  int wakes_[3] = {0, 0, 0};
  uint64_t cached_ = 0;  // entries read back from the segments as soon as possible
  uint64_t file_entries_ = 0;  // entries delivered that referred to the sender's segment files
  std::function<void(raft::Message&)> tamper_;  // changes messages on the way when set
  bool check_quorum_ = true;  // for the replicas opened from then on
};

TEST_P(Group, ElectsCommitsAndReplicatesTheSameBatches) {
  run_until([&] { return leader() >= 0; });
  const int l = leader();
  auto acks = produce(l, 20, "a");
  run_until([&] { return acks->size() == 20; });
  for (size_t i = 0; i < acks->size(); ++i) {
    EXPECT_EQ((*acks)[i].first, ErrorCode::kNone);
    EXPECT_EQ((*acks)[i].second, static_cast<int64_t>(i) * 3);  // contiguous Kafka offsets
  }
  EXPECT_EQ(nodes_[l].replica->high_watermark(), 60);
  run_until([&] { return values(0).size() == 60 && values(1).size() == 60 && values(2).size() == 60; });
  EXPECT_EQ(values(0), values(1));
  EXPECT_EQ(values(0), values(2));
}

// Asynchronous writes: the leader's next batch goes into the log while the previous one is
// not yet durable; one at a time, it waits for that. Either way every batch is acknowledged
// once durable, and the replicas hold the same log.
TEST_P(Group, ALeadersNextBatchIsWrittenWhileThePreviousSyncs) {
  run_until([&] { return leader() >= 0; });
  const int l = leader();
  run_until([&] { return nodes_[l].log->idle(); });
  // At rest: no Ready of the replica's own still being persisted (a commit index or a term in
  // raft.state), which would hold the next one back until its completion is taken. Only I/O
  // runs here: no ticks, no messages, so no new Ready comes up.
  for (int i = 0; i < 5000 && !nodes_[l].replica->quiet(); ++i) {
    io_.poll();
    ring_.submit();
    ring_.poll_completions();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_TRUE(nodes_[l].replica->quiet());
  log::PartitionLog& log = *nodes_[l].log;
  auto first = produce(l, 1, "a");
  io_.poll();  // its Ready runs: the write is handed to the ring; no completion is taken yet
  auto second = produce(l, 1, "b");
  io_.poll();
  EXPECT_EQ(*log.durable_offset(), 0);
  EXPECT_EQ(*log.log_end_offset(), GetParam() ? 6 : 3);
  run_until([&] { return first->size() == 1 && second->size() == 1; });
  EXPECT_EQ((*first)[0], std::make_pair(ErrorCode::kNone, int64_t{0}));
  EXPECT_EQ((*second)[0], std::make_pair(ErrorCode::kNone, int64_t{3}));
  // (Acknowledged once on a majority: the followers' disks may be it, the leader's sync later.)
  run_until([&] { return *log.durable_offset() >= 6; });
  auto more = produce(l, 30, "c");
  run_until([&] { return more->size() == 30; });
  for (const auto& [code, base] : *more) EXPECT_EQ(code, ErrorCode::kNone);
  run_until(
      [&] { return values(0).size() == 96 && values(1).size() == 96 && values(2).size() == 96; });
  EXPECT_EQ(values(0), values(1));
  EXPECT_EQ(values(0), values(2));
}

// Replicas and logs that gave their descriptors back while idle (more partitions than a shard
// keeps them for) open them again through the ring for their next write, and go on as before.
TEST_P(Group, ReplicasThatGaveTheirFilesBackOpenThemAgainAndWriteOn) {
  run_until([&] { return leader() >= 0; });
  const int l = leader();
  auto acks = produce(l, 10, "a");
  run_until([&] { return acks->size() == 10; });
  for (int round = 0; round < 3; ++round) {
    // Idle and everything durable: each gives its descriptors back.
    run_until([&] {
      bool all = true;
      for (auto& n : nodes_) {
        if (n.replica->holds_fds() && !n.replica->release_fds()) all = false;
        if (n.log->holds_fds() && !n.log->release_fds()) all = false;
      }
      return all;
    });
    for (auto& n : nodes_) {
      ASSERT_FALSE(n.replica->holds_fds());
      ASSERT_FALSE(n.log->holds_fds());
    }
    auto more = produce(l, 10, "b");
    run_until([&] { return more->size() == 10; });
    for (const auto& [code, offset] : *more) EXPECT_EQ(code, ErrorCode::kNone);
    EXPECT_EQ(more->front().second, 30 + 30 * round);
    EXPECT_TRUE(nodes_[l].replica->holds_fds());
    EXPECT_TRUE(nodes_[l].log->holds_fds());
  }
  run_until([&] {
    return values(0).size() == 120 && values(1).size() == 120 && values(2).size() == 120;
  });
  EXPECT_EQ(values(0), values(1));
  EXPECT_EQ(values(0), values(2));
}

TEST_P(Group, ASleepingReplicaWakesOnceForWhateverReachesIt) {
  // The shard stops ticking a sleeping replica; anything that reaches it must say so once.
  run_until([&] { return leader() >= 0; });
  const int l = leader(), f = (l + 1) % 3;
  nodes_[f].replica->sleep();
  nodes_[l].replica->sleep();
  EXPECT_TRUE(nodes_[f].replica->sleeping());
  auto acks = produce(l, 2, "w");  // a proposal wakes the leader
  EXPECT_EQ(wakes_[l], 1);
  EXPECT_FALSE(nodes_[l].replica->sleeping());
  run_until([&] { return acks->size() == 2; });
  EXPECT_EQ(wakes_[f], 1);  // the leader's append woke the follower, once
  EXPECT_FALSE(nodes_[f].replica->sleeping());
  nodes_[f].replica->sleep();
  nodes_[f].replica->campaign();
  EXPECT_EQ(wakes_[f], 2);
  EXPECT_EQ(wakes_[l], 1);  // never asleep again: no more wakes
}

TEST_P(Group, FollowerNotLeaderAnswers) {
  run_until([&] { return leader() >= 0; });
  const int f = (leader() + 1) % 3;
  auto batch = make_batch(1, "x");
  EXPECT_EQ(nodes_[f].replica->produce(MutableBytes(batch), -1, {}),
            ErrorCode::kNotLeaderOrFollower);
}

TEST_P(Group, FollowersCheckTheCrcOfWhatTheLeaderSends) {
  // The leader's log trusts its own proposals' CRCs (the Produce path checked them); a follower
  // must not trust what arrives from its leader (sent from the leader's files when it lags): a
  // batch whose bytes changed on the way (here: already at the leader) is refused, never
  // stored, and the follower stays up (the append is dropped; the leader sends it again).
  run_until([&] { return leader() >= 0; });
  const int l = leader();
  auto bad = make_batch(3, "flipped");
  bad.back() ^= std::byte{1};
  ASSERT_EQ(nodes_[l].replica->produce(MutableBytes(bad), -1, {}), ErrorCode::kNone);
  const int f1 = (l + 1) % 3, f2 = (l + 2) % 3;
  run_until(
      [&] {
        return nodes_[f1].replica->appends_rejected() >= 2 &&
               nodes_[f2].replica->appends_rejected() >= 2;
      },
      300);
  EXPECT_EQ(*nodes_[f1].log->log_end_offset(), 0);
  EXPECT_EQ(*nodes_[f2].log->log_end_offset(), 0);
  EXPECT_FALSE(nodes_[f1].replica->failed());
  EXPECT_FALSE(nodes_[f2].replica->failed());
  EXPECT_EQ(nodes_[l].replica->high_watermark(), 0);  // never committed
}

TEST_P(Group, AFollowerDropsBatchesThatDoNotSayWhatTheirEntrySays) {
  // A batch must carry its entry's term as its leader epoch and as many records as the entry
  // spans (a leader's file rewritten under a queued message would not): one that does not is
  // not stored, and the follower takes the right one when it comes.
  run_until([&] { return leader() >= 0; });
  const int l = leader(), f1 = (l + 1) % 3, f2 = (l + 2) % 3;
  tamper_ = [&](raft::Message& m) {
    if (*m.to != f1) return;
    for (raft::Entry& e : m.entries) {
      if (e.type != raft::EntryType::kNormal) continue;
      auto loaded = e.data.loaded();
      ASSERT_TRUE(loaded);
      std::vector<std::byte> b(loaded->bytes().begin(), loaded->bytes().end());
      kafka::set_partition_leader_epoch(b, static_cast<int32_t>(*e.term) + 1);
      kafka::update_crc(b);  // a good CRC: only the epoch is wrong
      e.data = raft::Payload::adopt(std::move(b));
    }
  };
  auto acks = produce(l, 5, "e");
  run_until([&] { return acks->size() == 5; });  // committed by the leader and f2
  run_until([&] { return nodes_[f1].replica->appends_rejected() >= 1; }, 300);
  EXPECT_EQ(*nodes_[f1].log->log_end_offset(), 0);
  EXPECT_FALSE(nodes_[f1].replica->failed());
  tamper_ = nullptr;
  run_until([&] { return values(f1).size() == 15; });
  EXPECT_EQ(values(f1), values(l));
  EXPECT_EQ(values(f2), values(l));
}

TEST_P(Group, AnUncommittableWriteIsAnsweredAtItsTimeout) {
  run_until([&] { return leader() >= 0; });
  const int l = leader();
  cut_[(l + 1) % 3] = cut_[(l + 2) % 3] = true;  // nothing can commit
  auto batch = make_batch(1, "t");
  std::vector<ErrorCode> got;
  ASSERT_EQ(nodes_[l].replica->produce(
                MutableBytes(batch), -1, [&](ErrorCode e, int64_t) { got.push_back(e); }, 1),
            ErrorCode::kNone);
  run_until([&] { return !got.empty(); }, 50);
  // Answered: timed out, or not the leader any more (check-quorum) if that came first.
  EXPECT_TRUE(got[0] == ErrorCode::kRequestTimedOut || got[0] == ErrorCode::kNotLeaderOrFollower);
}

TEST_P(Group, WaitingProducesAreAnsweredWhenTheReplicaIsDropped) {
  run_until([&] { return leader() >= 0; });
  const int l = leader();
  cut_[(l + 1) % 3] = cut_[(l + 2) % 3] = true;  // nothing can commit
  auto deleted = produce(l, 2, "d");
  step(false);
  ASSERT_TRUE(deleted->empty());
  // The partition is deleted: the produces waiting are told, with the code given.
  nodes_[l].replica->abandon_waiters(ErrorCode::kUnknownTopicOrPartition);
  ASSERT_EQ(deleted->size(), 2u);
  for (const auto& [e, base] : *deleted) {
    EXPECT_EQ(e, ErrorCode::kUnknownTopicOrPartition);
    EXPECT_EQ(base, -1);
  }
  // A replica dropped with produces waiting answers them (a connection waits for every answer).
  auto dropped = produce(l, 3, "x");
  step(false);
  ASSERT_TRUE(dropped->empty());
  close(l);
  ASSERT_EQ(dropped->size(), 3u);
  for (const auto& [e, base] : *dropped) EXPECT_EQ(e, ErrorCode::kNotLeaderOrFollower);
}

TEST_P(Group, RestartedFollowerCatchesUpFromSegments) {
  run_until([&] { return leader() >= 0; });
  const int l = leader();
  const int f = (l + 1) % 3;
  crash(f);
  auto acks = produce(l, 50, "b");
  run_until([&] { return acks->size() == 50; });
  open(f);
  file_entries_ = 0;
  run_until([&] { return values(f).size() == 150; }, 4000);
  EXPECT_EQ(values(f), values(l));
  EXPECT_GT(file_entries_, 0u);  // sent from the leader's segment files, not read into memory
}

// DeleteRecords: the leader's new log start reaches every replica through a control entry,
// which takes no Kafka offset; a follower restarted after it keeps the moved start.
TEST_P(Group, LogStartReplicatesToFollowersWithoutTakingOffsets) {
  run_until([&] { return leader() >= 0; });
  const int l = leader();
  auto acks = produce(l, 10, "d");
  run_until([&] { return acks->size() == 10; });
  ASSERT_EQ(nodes_[l].log->advance_log_start(Offset(12)).has_value(), true);
  nodes_[l].replica->log_start_moved();
  std::vector<ErrorCode> got;
  ASSERT_EQ(nodes_[l].replica->replicate_log_start(12, [&](ErrorCode e) { got.push_back(e); }),
            ErrorCode::kNone);
  run_until([&] { return !got.empty(); });
  EXPECT_EQ(got[0], ErrorCode::kNone);
  for (int i = 0; i < 3; ++i) {
    run_until([&] { return *nodes_[i].log->log_start_offset() == 12; });
    EXPECT_EQ(*nodes_[i].log->log_start_offset(), 12) << "replica " << i;
  }
  // The next batch follows at offset 30: the control entry took none.
  auto more = produce(l, 1, "e");
  run_until([&] { return more->size() == 1; });
  EXPECT_EQ((*more)[0], std::make_pair(ErrorCode::kNone, int64_t{30}));
  const int f = (l + 1) % 3;
  close(f);
  open(f);
  EXPECT_EQ(*nodes_[f].log->log_start_offset(), 12);
  run_until([&] { return *nodes_[f].log->log_end_offset() == 33; });
}

// DeleteRecords inside a batch older than the log's window of recent batches (a restarted
// replica has none): the node's log still starts at that batch, whose header came through the
// ring (PartitionLog::read_async), not from a read of the files on the replica's thread (the
// shard's, in the broker).
TEST_P(Group, LogStartInsideAnOldBatchIsFoundThroughTheRing) {
  run_until([&] { return leader() >= 0; });
  auto acks = produce(leader(), 10, "d");  // offsets 0-29, three per batch
  run_until([&] { return acks->size() == 10; });
  run_until([&] {  // every replica holds them all: nothing reaches f's window after its restart
    for (const Node& n : nodes_) {
      if (*n.log->log_end_offset() != 30) return false;
    }
    return true;
  });
  const int f = (leader() + 1) % 3;
  close(f);
  open(f);  // no window of recent batches
  run_until([&] {
    const auto st = nodes_[f].replica->node().status();
    return *st.applied >= *st.commit && nodes_[f].replica->high_watermark() == 30;
  });
  const uint64_t first = nodes_[f].replica->node().log().first_index();
  const auto before = nodes_[f].log->cold_read_stats();
  ASSERT_TRUE(nodes_[f].log->advance_log_start(Offset(13)).has_value());  // inside 12-14
  nodes_[f].replica->log_start_moved();
  run_until([&] { return nodes_[f].replica->node().log().first_index() > first; }, 200);
  const auto after = nodes_[f].log->cold_read_stats();
  // Nothing read on this thread: the header came from the cold-read cache, through the ring.
  EXPECT_EQ(after.file_lookups, before.file_lookups);
  EXPECT_EQ(after.blocking_reads, before.blocking_reads);
  // The node's log starts where a replica that still has its window starts it (batch_at from
  // memory): at the entry of the batch holding offsets 12-14.
  const int l = leader();
  ASSERT_NE(l, f);
  ASSERT_TRUE(nodes_[l].log->advance_log_start(Offset(13)).has_value());
  nodes_[l].replica->log_start_moved();
  EXPECT_GT(nodes_[l].replica->node().log().first_index(), first);
  EXPECT_EQ(nodes_[f].replica->node().log().first_index(),
            nodes_[l].replica->node().log().first_index());
}

// Found by tests/fault (seed 2, docs/fault-testing.md): a follower more than the log's
// inflight_appends_max (1024) batches behind got them in one append message (up to 1 MiB) and
// one Ready; the log refused the append as busy and the replica stopped for good.
TEST_P(Group, FollowerCatchesUpMoreBatchesThanTheLogTakesInFlightAtOnce) {
  run_until([&] { return leader() >= 0; });
  const int f = (leader() + 1) % 3;
  crash(f);
  // Small rounds (the leader's own Readies stay small) until 1,500 batches are acknowledged.
  // On a loaded machine the two left may change leaders (the disk is real and slow, the
  // ticks are not): a round then goes on at the new leader.
  int acked = 0;
  for (int round = 0; round < 8 && acked < 1500; ++round) {
    run_until([&] { return leader() >= 0; });
    auto acks = produce(leader(), 500, "r" + std::to_string(round) + "-");
    run_until([&] { return acks->size() == 500; }, 4000);
    for (const auto& [e, base] : *acks) acked += e == ErrorCode::kNone ? 1 : 0;
  }
  ASSERT_GE(acked, 1500);
  open(f);
  run_until([&] {
    const int l = leader();
    return l >= 0 && values(f).size() >= 3u * static_cast<size_t>(acked) &&
           values(f).size() == values(l).size();
  }, 4000);
  EXPECT_FALSE(nodes_[f].replica->failed());
  const int l = leader();
  ASSERT_GE(l, 0);
  EXPECT_EQ(values(f), values(l));
}

TEST_P(Group, NewLeaderAfterCutOffKeepsOffsetsContiguousAndOldLeaderTruncates) {
  run_until([&] { return leader() >= 0; });
  const int old = leader();
  auto first = produce(old, 5, "c");
  run_until([&] { return first->size() == 5; });
  // The leader is cut off; what it takes now can never commit.
  cut_[old] = true;
  auto lost = produce(old, 5, "lost");
  for (int i = 0; i < 30; ++i) step(true);
  EXPECT_TRUE(lost->empty() || (*lost)[0].first != ErrorCode::kNone);
  run_until([&] { return leader() >= 0 && leader() != old; });
  const int now = leader();
  auto second = produce(now, 5, "d");
  run_until([&] { return second->size() == 5; });
  EXPECT_EQ((*second)[0].second, 15);  // right after the committed ones: no gap
  cut_[old] = false;
  run_until([&] { return values(old).size() == 30 && values(old) == values(now); }, 4000);
  for (const auto& [e, base] : *lost) EXPECT_NE(e, ErrorCode::kNone);
  for (const std::string& v : values(now)) EXPECT_EQ(v.find("lost"), std::string::npos);
  // Many elections later, offsets still run without a gap on every replica.
  for (int round = 0; round < 5; ++round) {
    const int l = leader();
    ASSERT_GE(l, 0);
    auto more = produce(l, 2, "e" + std::to_string(round));
    run_until([&] { return more->size() == 2; });
    cut_[l] = true;
    run_until([&] { return leader() >= 0 && leader() != l; });
    cut_[l] = false;
  }
  const int l = leader();
  auto last = produce(l, 1, "z");
  run_until([&] { return last->size() == 1; });
  EXPECT_EQ((*last)[0].second, 30 + 5 * 2 * 3);
  run_until([&] {
    return values(0).size() == 63 && values(0) == values(1) && values(1) == values(2);
  }, 4000);
}

// A deposed leader's uncommitted tail spans segment rolls (64 KiB segments here): its cut goes
// into an earlier segment, the rare cut (PartitionLog::truncate_suffix_async's blocking one,
// its .log cut and the later segments' removal through the ring), and the replica goes on once
// the ring's cut completed.
TEST_P(Group, ADeposedLeadersTailAcrossSegmentsIsCutAndReplaced) {
  run_until([&] { return leader() >= 0; });
  const int old = leader();
  auto first = produce(old, 5, "c");
  run_until([&] { return first->size() == 5; });
  const size_t segments_before = nodes_[old].log->segment_count();
  cut_[old] = true;
  auto lost = produce(old, 24, "lost" + std::string(6000, 'x'));  // ~18 KiB a batch
  for (int i = 0; i < 30; ++i) step(true);
  ASSERT_GE(nodes_[old].log->segment_count(), segments_before + 3)
      << "the uncommitted tail should span several segments";
  run_until([&] { return leader() >= 0 && leader() != old; });
  const int now = leader();
  auto second = produce(now, 5, "d");
  run_until([&] { return second->size() == 5; });
  EXPECT_EQ((*second)[0].second, 15);
  cut_[old] = false;
  run_until([&] { return values(old).size() == 30 && values(old) == values(now); }, 4000);
  for (const auto& [e, base] : *lost) EXPECT_NE(e, ErrorCode::kNone);
  for (const std::string& v : values(old)) EXPECT_EQ(v.find("lost"), std::string::npos);
  EXPECT_EQ(nodes_[old].log->segment_count(), nodes_[now].log->segment_count());
  auto third = produce(now, 2, "e");
  run_until([&] { return third->size() == 2 && values(old).size() == 36; }, 4000);
  EXPECT_EQ(values(old), values(now));
}

TEST_P(Group, AFollowerThatReplacesItsSuffixKnowsTheProducersOfWhatReplacedIt) {
  // A deposed leader's uncommitted batches are replaced by the new leader's; the new leader's
  // batches arrive in the same Ready that cuts the old ones. The producers' table rebuilt at
  // the cut must then learn them again: when this replica leads later, a producer's retry of
  // one of them is a duplicate (answered with its offset), not a batch to append again.
  run_until([&] { return leader() >= 0; });
  const int old = leader();
  auto first = produce(old, 2, "a", 42, 0);  // sequences 0-2, 3-5: offsets 0, 3
  run_until([&] { return first->size() == 2; });
  cut_[old] = true;
  auto lost = produce(old, 2, "lost", 42, 6);  // never committed
  for (int i = 0; i < 30; ++i) step(true);
  run_until([&] { return leader() >= 0 && leader() != old; });
  const int now = leader();
  auto again = produce(now, 2, "b", 42, 6);  // the producer's retries: offsets 6, 9
  run_until([&] { return again->size() == 2; });
  ASSERT_EQ((*again)[1], std::make_pair(ErrorCode::kNone, int64_t{9}));
  cut_[old] = false;
  run_until([&] { return values(old).size() == 12 && values(old) == values(now); }, 4000);
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE("replica " + std::to_string(i) + (i == old ? " (the deposed leader)" : ""));
    if (i == now) continue;  // a leader's own proposals are recorded by the Produce path
    const SequenceCheck retry = producers_[i].check(42, 0, 9, 3);
    EXPECT_EQ(retry.verdict, SequenceCheck::Verdict::kDuplicate);
    EXPECT_EQ(retry.duplicate_base_offset, 9);
    EXPECT_EQ(producers_[i].check(42, 0, 6, 3).duplicate_base_offset, 6);
    EXPECT_EQ(producers_[i].check(42, 0, 12, 3).verdict, SequenceCheck::Verdict::kAppend);
  }
}

TEST_P(Group, ADeposedLeadersOwnEntriesAreCutFromRaftInternal) {
  // A leader cut off from the others proposes a control entry (DeleteRecords) that never
  // commits; the new leader's entries take its place. The deposed leader cuts its stored
  // Raft entries (raft.internal, through the ring) before writing the new ones: afterwards
  // every replica's raft.internal holds the same bytes (no tail of the replaced entry).
  run_until([&] { return leader() >= 0; });
  const int old = leader();
  auto first = produce(old, 4, "a");
  run_until([&] { return first->size() == 4; });
  cut_[old] = true;
  std::vector<ErrorCode> lost;
  ASSERT_EQ(nodes_[old].replica->replicate_log_start(2, [&](ErrorCode e) { lost.push_back(e); }),
            ErrorCode::kNone);
  for (int i = 0; i < 30; ++i) step(true);
  run_until([&] { return leader() >= 0 && leader() != old; });
  const int now = leader();
  auto again = produce(now, 2, "b");
  run_until([&] { return again->size() == 2; });
  cut_[old] = false;
  run_until([&] { return values(old) == values(now) && values(now).size() == 18; }, 4000);
  run_until([&] { return !lost.empty(); });
  EXPECT_NE(lost[0], ErrorCode::kNone);
  auto internal = [&](int i) {
    std::ifstream in(dir(i) + "/raft.internal", std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  run_until([&] { return internal(old) == internal(now); }, 1000);
  EXPECT_EQ(internal(old), internal(now));
  EXPECT_FALSE(internal(now).empty());
}

TEST_P(Group, ProposalsReplacedBeforeAnyReadyHandedThemOutLeaveNoStaleProducerState) {
  // The Produce path records a leader's proposal in the producers' table at once. A deposed
  // leader whose proposals a later leader's entries replace before a Ready handed them out
  // has no file to cut: the table must still forget them. Otherwise, leading again, it would
  // answer a producer's retry of one of them as a duplicate at the offset the proposal had,
  // where another batch lies (an acknowledgement for a batch that is elsewhere).
  for (int i = 0; i < 3; ++i) close(i);
  check_quorum_ = false;  // the cut-off leader keeps leading until it hears the new term
  for (int i = 0; i < 3; ++i) open(i);
  run_until([&] { return leader() >= 0; });
  const int old = leader();
  auto first = produce(old, 2, "a", 42, 0);  // sequences 0-2, 3-5: offsets 0, 3
  run_until([&] { return first->size() == 2; });
  std::vector<raft::Message> appends;  // what the others send each other, in order
  tamper_ = [&](raft::Message& m) {
    if (m.type == raft::MessageType::kAppend && *m.from != old) appends.push_back(m);
  };
  cut_[old] = true;
  run_until([&] { return leader() >= 0 && leader() != old; });
  const int now = leader();
  auto other = produce(now, 1, "x", 7, 0);   // offset 6
  auto again = produce(now, 2, "b", 42, 6);  // the producer's next batches: offsets 9, 12
  run_until([&] { return other->size() == 1 && again->size() == 2; });
  ASSERT_EQ((*again)[0], std::make_pair(ErrorCode::kNone, int64_t{9}));
  tamper_ = nullptr;
  ASSERT_TRUE(nodes_[old].replica->is_leader());
  // The old leader takes the same batches (a retry that went to it): offsets 6 and 9 there,
  // recorded as the Produce path records them.
  std::vector<std::shared_ptr<std::vector<std::byte>>> lost;
  auto lost_acks = std::make_shared<std::vector<ErrorCode>>();
  for (int i = 0; i < 2; ++i) {
    kafka::RecordBatchBuilder::Options options;
    options.producer_id = 42;
    options.producer_epoch = 0;
    options.base_sequence = 6 + 3 * i;
    lost.push_back(std::make_shared<std::vector<std::byte>>(
        make_batch(3, "lost" + std::to_string(i), options)));
    ASSERT_EQ(nodes_[old].replica->produce(MutableBytes(*lost.back()), -1,
                                           [lost_acks](ErrorCode e, int64_t) {
                                             lost_acks->push_back(e);
                                           }),
              ErrorCode::kNone);
    auto view = kafka::RecordBatchView::parse(*lost.back());
    producers_[old].record(42, 0, 6 + 3 * i, 3, view->base_offset());
  }
  EXPECT_EQ(producers_[old].check(42, 0, 6, 3).duplicate_base_offset, 6);
  // Before any Ready hands those proposals out, the new leader's entries reach it.
  std::erase_if(appends, [&](const raft::Message& m) {
    return *m.from != now || *m.term != *nodes_[now].replica->node().term();
  });
  ASSERT_FALSE(appends.empty());
  for (raft::Message m : appends) {
    m.to = raft::NodeId(old);
    nodes_[old].replica->step(std::move(m));
  }
  EXPECT_FALSE(nodes_[old].replica->is_leader());
  cut_[old] = false;
  run_until([&] { return values(old).size() == 15 && values(old) == values(now); }, 4000);
  run_until([&] { return lost_acks->size() == 2; });
  for (ErrorCode e : *lost_acks) EXPECT_NE(e, ErrorCode::kNone);
  const SequenceCheck retry = producers_[old].check(42, 0, 6, 3);
  EXPECT_EQ(retry.verdict, SequenceCheck::Verdict::kDuplicate);
  EXPECT_EQ(retry.duplicate_base_offset, 9);
  EXPECT_EQ(producers_[old].check(42, 0, 9, 3).duplicate_base_offset, 12);
  EXPECT_EQ(producers_[old].check(42, 0, 12, 3).verdict, SequenceCheck::Verdict::kAppend);
}

TEST_P(Group, ReopenedReplicaKeepsTermVoteAndLog) {
  run_until([&] { return leader() >= 0; });
  const int l = leader();
  auto acks = produce(l, 10, "r");
  run_until([&] { return acks->size() == 10; });
  const int32_t epoch = nodes_[l].replica->leader_epoch();
  for (int i = 0; i < 3; ++i) crash(i);
  for (int i = 0; i < 3; ++i) open(i);
  run_until([&] { return leader() >= 0; });
  EXPECT_GT(nodes_[leader()].replica->leader_epoch(), epoch);
  EXPECT_EQ(nodes_[leader()].replica->high_watermark(), 30);
  const auto [e, end] = nodes_[leader()].replica->end_offset_for_epoch(epoch);
  EXPECT_EQ(e, epoch);
  EXPECT_EQ(end, 30);
}

INSTANTIATE_TEST_SUITE_P(Writes, Group, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& p) {
                           return p.param ? "Async" : "OneAtATime";
                         });

}  // namespace
}  // namespace sluice::broker
