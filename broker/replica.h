// One replica of a partition: the partition's Raft group on this broker, driven over the
// partition's segment log (DESIGN.md, "The partition log is the Raft log").
//
// Index spaces. Raft index r is log position r - 1; every record of every batch takes one, and
// so do Raft's own entries (the bootstrap configuration, a new leader's no-op, membership
// changes). The segment files hold only data batches, stamped with their Kafka offsets, so
// consumers and followers get them unchanged from the files; Raft's own entries, a handful per
// election, live beside them in `raft.internal`. One log::OffsetTranslator maps the two spaces
// (replication/README.md, "Partitions": the on-disk choice and why).
//
// Files in the partition directory, beside the segments:
//   raft.state     term, vote, the log start (snapshot index and term, internal records
//                  before it) and a commit hint: two checksummed 64-byte slots written in turn
//                  through the shard's io_uring, so a torn write leaves the other slot whole;
//   raft.internal  Raft's own entries: u32 length | u32 crc32c(rest) | u64 index | u64 term |
//                  u8 type | u64 kafka position | data. Made durable before any data batch
//                  that follows them is written, so recovery never finds data whose index
//                  depends on an internal entry it lost.
//
// Persistence runs the core's contract asynchronously on the shard: one Ready at a time;
// a Ready's internal entries and hard state are written and fdatasync'd first (when it has
// any), then its data batches are appended (the Kafka offsets the leader chose are checked,
// never rewritten), then once the log has them durable the messages go out, the node advances
// and committed entries are applied. Many proposals made while a Ready is on disk go out in
// the next one: that is the group commit. A follower's conflicting suffix is truncated once the
// log has nothing in flight (a timer waits; the shard never blocks).
//
// Thread: the shard's. Not thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "common/result.h"
#include "log/io_ring.h"
#include "log/log.h"
#include "log/offset_translator.h"
#include "protocol/error_codes.h"
#include "replication/raft/node.h"

namespace sluice::broker {

class SyncPacer;  // broker/sync_pacer.h

struct ReplicaOptions {
  int32_t self = 0;
  uint64_t group = 0;                   // the Raft group id on the wire (partition_group_id)
  std::string name;                     // for log lines ("topic-partition")
  std::vector<int32_t> initial_voters;  // a new partition's configuration (its replicas)
  raft::Config raft;                    // ticks, limits (id and seed are set by the replica)
  int64_t tick_ms = 50;                 // how long a tick is (for "heard from lately")
  // The shard's pacing of persists of this replica's own proposals (null: none).
  std::shared_ptr<SyncPacer> pacer;
  // Only persists carrying fewer new bytes than this wait for the pacer: a sync's cost to the
  // machine is per sync, and one that carries this much is worth it (0: every persist waits).
  uint64_t pace_below_bytes = 0;
  // A leader's Readies that only append its own batches are advanced as soon as the log took
  // their writes, and reported durable later (raft::Node::persisted, etcd's asynchronous
  // storage writes): the next Ready's write overlaps this one's fdatasync.
  bool async_writes = false;
};

struct ReplicaEvents {
  // Messages to peers (already durable as the contract asks).
  std::function<void(uint64_t group, std::vector<raft::Message>)> send;
  // Role, leader or term changed.
  std::function<void()> on_role_change;
  // The replica started this many elections since the last call (sluice_raft_campaigns_total).
  std::function<void(uint64_t)> on_campaigns;
  // The high watermark moved (wake parked fetches).
  std::function<void()> on_commit;
  // A data batch joined the log (leader: when proposed; follower: when received), with its
  // Kafka base offset: idempotent producer state follows the log on every replica.
  std::function<void(Bytes batch)> on_data;
  // The log's suffix was replaced or the log restarted (producer state must be rebuilt).
  std::function<void()> on_truncated;
  // A storage failure stopped the replica.
  std::function<void(const std::string& why)> on_failed;
  // The replica was put to sleep (sleep()) and something reached it again: tick it.
  std::function<void()> on_wake;
};

// 16 bytes for a data partition snapshot ("the log now starts at kafka offset X, with Y
// internal records before it").
struct LogStartImage {
  int64_t kafka_start = 0;
  int64_t internal_before = 0;
};

// Descriptors: raft.state and raft.internal are open while the replica is in use; an idle one
// (no Ready on disk, no slot write in flight) closes them when the shard's FdCache asks
// (log::FdHolder) and reopens them on its next write.
class Replica final : public raft::LogSource, public log::FdHolder {
 public:
  // Opens the Raft state beside `log` (creating it for a new partition: bootstrap with
  // options.initial_voters). `log`, `ring` and `io` belong to the shard and outlive the
  // replica.
  static Result<std::unique_ptr<Replica>> open(const std::string& dir, log::PartitionLog& log,
                                               log::IoRing& ring, boost::asio::io_context& io,
                                               ReplicaOptions options, ReplicaEvents events);
  ~Replica() override;
  Replica(const Replica&) = delete;
  Replica& operator=(const Replica&) = delete;

  // Leader: appends `batch` (validated by the caller; `records` = lastOffsetDelta + 1),
  // stamping its base offset and leader epoch in place first, then copying it into the log;
  // with an `owner` that keeps the batch's bytes alive (and nobody changes them afterwards),
  // the Raft entry refers to them instead of copying.
  // `done(error, kafka base offset)` runs once the batch is committed (acks = -1) or durable
  // on this broker (acks = 1), or with NOT_LEADER_OR_FOLLOWER when leadership is lost first.
  // Not done within `timeout_ms` (> 0): REQUEST_TIMED_OUT (the batch may still commit).
  using ProduceDone = std::function<void(kafka::ErrorCode, int64_t base_offset)>;
  kafka::ErrorCode produce(MutableBytes batch, int16_t acks, ProduceDone done,
                           int64_t timeout_ms = 0, std::shared_ptr<const void> owner = {});
  // Runs `done` once every Kafka offset below `kafka_end` is committed (acks=all duplicates).
  void when_committed(int64_t kafka_end, std::function<void(kafka::ErrorCode)> done);
  // Answers every produce and when_committed still waiting with `code`: their outcome is
  // no longer this replica's to tell (the partition is deleted, or the replica dropped). The
  // destructor answers what is left with NOT_LEADER_OR_FOLLOWER: a Produce is always answered.
  void abandon_waiters(kafka::ErrorCode code);

  void tick();
  // Alone in its group or quiesced (raft::Node::alone(), quiesced()), with no produce waiting
  // for a timeout and no Ready pending: tick() would do nothing, so the shard skips it.
  bool tick_idle() const {
    return !failed_ && !running_ && !scheduled_ && writing_ == 0 && waiters_.empty() &&
           (node_->alone() || node_->quiesced());
  }
  bool quiesced() const { return node_->quiesced(); }
  // The shard saw no frame from this follower's leader's broker, or from enough of this
  // quiesced leader's voters' brokers to make a quorum, for an election timeout
  // (raft::Node::peers_silent).
  void peers_silent();
  // The shard stops ticking a replica while tick_idle() holds (10,000 idle partitions cost
  // nothing per tick): anything that reaches it afterwards (a message, a proposal, a campaign,
  // a membership change) runs events.on_wake first, once, and it is ticked again.
  void sleep() { sleeping_ = true; }
  bool sleeping() const { return sleeping_; }
  void step(raft::Message&& message);
  // Appends dropped because a batch did not check out (check_append).
  uint64_t appends_rejected() const { return appends_rejected_; }
  // log::FdHolder: closes raft.state and raft.internal when nothing is being written.
  bool release_fds() override;
  bool holds_fds() const { return state_fd_ >= 0 || internal_fd_ >= 0; }
  bool fds_open() const { return state_fd_ >= 0 && internal_fd_ >= 0; }
  void campaign();
  Result<void, raft::Errc> transfer_leadership(int32_t to);

  bool is_leader() const { return node_->role() == raft::Role::kLeader; }
  // A leader that has committed an entry of its own term: its high watermark is current.
  bool serving() const;
  int32_t leader() const { return static_cast<int32_t>(*node_->leader()); }
  int32_t leader_epoch() const { return static_cast<int32_t>(*node_->term()); }
  // Kafka offsets: what consumers may read (below the commit index), the log end (Raft's,
  // including entries not yet on disk) and the log start.
  int64_t high_watermark() const;
  int64_t log_end() const;
  // The voters whose log reached the commit index and that the leader heard from within
  // `lag_ms` (Kafka's ISR; the leader itself always). Followers: the voters.
  std::vector<int32_t> in_sync_replicas(int64_t lag_ms) const;
  std::vector<int32_t> voters() const;
  // Leader: how far each other voter's log is behind this one's, in Raft indexes (an entry
  // spans as many indexes as it holds records: about records); empty on followers.
  std::vector<std::pair<int32_t, int64_t>> follower_lag() const;
  // OffsetForLeaderEpoch: the end offset (Kafka) of `epoch` on this replica's log (the start
  // of the next larger epoch, or the log end for the current one) and the largest epoch
  // <= `epoch` that the log has; {-1, -1} when it has none.
  std::pair<int32_t, int64_t> end_offset_for_epoch(int32_t epoch) const;
  // The log start moved (retention, DeleteRecords): the node forgets what is gone, at once
  // or, when the new start lies inside a batch older than the log's window of recent
  // batches, once that batch's header came through the ring (from a task on the replica's
  // io_context).
  void log_start_moved();
  // Leader, DeleteRecords: replicates "the log starts at `kafka_start`" as a Raft control
  // entry, which every replica applies (moving its own log start) once committed; `done`
  // runs at commit (NOT_LEADER_OR_FOLLOWER if leadership is lost first).
  kafka::ErrorCode replicate_log_start(int64_t kafka_start,
                                       std::function<void(kafka::ErrorCode)> done);
  // Controlled shutdown: a leader of a group with other voters hands leadership to its most
  // caught-up voter (Raft leadership transfer). Returns whether it still leads such a group.
  bool hand_off();
  // Moves: the group's membership (latest, committed or not), a single-server change of it
  // (leader only; see raft::Node::propose_conf), and whether a member holds everything
  // committed (leader only).
  raft::ConfState conf() const { return node_->status().conf; }
  Result<void, raft::Errc> change_membership(const raft::ConfState& next);
  bool caught_up(int32_t id) const;
  bool failed() const { return failed_; }
  // It stopped because a write of its own (the Raft state) found the disk full: the broker
  // reopens it once there is room, as it reopens a log stopped by a full disk.
  bool failed_for_space() const { return failed_ && failed_for_space_; }
  // Nothing of the replica's own in flight (no Ready being persisted, no raft.state write):
  // it may be destroyed and reopened.
  bool quiet() const { return !running_ && !scheduled_ && writing_ == 0 && slot_writes_ == 0; }
  const raft::Node& node() const { return *node_; }
  uint64_t group() const { return options_.group; }

  // raft::LogSource
  std::vector<raft::Entry> entries(LogIndex lo, LogIndex hi, uint64_t max_bytes) override;

 private:
  struct Internal {
    uint64_t index = 0;
    uint64_t term = 0;
    raft::EntryType type = raft::EntryType::kNoop;
    int64_t kafka_pos = 0;  // data records before it (the Kafka offset of the next data)
    raft::Payload data;
    uint64_t file_pos = 0;  // where its record starts in raft.internal
  };
  struct StateSlot {
    uint64_t generation = 0;
    uint64_t term = 0;
    int64_t vote = -1;
    uint64_t snap_index = 0;
    uint64_t snap_term = 0;
    int64_t internal_before = 0;
    uint64_t commit = 0;
  };
  struct Waiter {
    int16_t acks;
    uint64_t term;
    int64_t kafka_base;
    ProduceDone done;
    int64_t deadline_ms = 0;  // steady clock; 0: none
  };

  // What one Ready asks of the files, worked out when it is taken.
  struct Plan {
    bool install = false;  // a snapshot from the leader: the log restarts
    LogStartImage install_image;
    int64_t data_cut = -1;              // Kafka offset the segment log is cut at (-1: none)
    uint64_t internal_cut = UINT64_MAX;  // raft.internal is cut at this byte
    std::vector<const raft::Entry*> data;  // into the Ready's entries
    // The term this replica led when the Ready was taken (0: not the leader). Entries of that
    // term are its own proposals: batches the Produce path has just checked (CRC included) or
    // that this broker built; the log need not check their CRCs again.
    uint64_t own_term = 0;
    bool own(const raft::Entry& e) const { return own_term != 0 && *e.term == own_term; }
    std::vector<Internal> internal;
    bool hard_state = false;  // term or vote changed
    // A later leader's entries replaced proposals of this replica's that no Ready had handed
    // out yet (no file to cut): the producers' table, which recorded them, is rebuilt.
    bool forget_proposals = false;
    // ReplicaOptions::async_writes: this Ready only appends the leader's own batches; it is
    // advanced once the log took them and reported durable later (persist_data).
    bool async = false;
  };

  Replica(log::PartitionLog& log, log::IoRing& ring, boost::asio::io_context& io,
          ReplicaOptions options, ReplicaEvents events);
  Status load(const std::string& dir);
  Status create(const std::string& dir);
  raft::RestoredState restored_state();

  // The Ready pipeline.
  void schedule();
  void truncated(const Plan& plan);
  void run();
  void execute(std::shared_ptr<raft::Ready> rd, std::shared_ptr<Plan> plan);
  // execute()'s second step, once the log and raft.internal are cut: Raft's own entries and
  // the hard state, then the data (persist_data).
  void write_raft_state(std::shared_ptr<raft::Ready> rd, std::shared_ptr<Plan> plan);
  // Appends plan->data from entry `from` on, at most kAppendChunk batches per log append.
  void persist_data(std::shared_ptr<raft::Ready> rd, std::shared_ptr<Plan> plan, size_t from = 0);
  // Runs `then` once the log is durable up to `at` (the replica stops if it cannot be made so).
  void when_log_durable(Offset at, std::function<void()> then);
  // `advanced`: Plan::async, the node was told already (Persisted{}).
  void finish(std::shared_ptr<raft::Ready> rd, bool advanced = false);
  void apply_control(const raft::Entry& e);
  // Writes raft.state's next slot (then fdatasyncs it if `sync`); `done` runs once. Without
  // `force` (commit hints) it is skipped while another slot write is in flight.
  void write_slot(bool sync, std::function<void(int32_t)> done, bool force = false);
  // log_start_moved's second half: snapshots the node's log up to the entry of the batch that
  // starts at Kafka offset `kstart`.
  void compact_to_log_start(int64_t kstart);
  void fail(const std::string& why, int err = 0);  // err: the errno, if a system call failed
  // Follower: whether an append's batches check out (step); false after reject_append().
  bool check_append(raft::Message& m);
  bool reject_append(const raft::Message& m, const std::string& why);
  void after_role_change();
  void complete_waiters();
  void refresh_voters();  // voters_ from the node's configuration

  // Translation (raft index r <-> log offset r - 1).
  int64_t kafka_of(uint64_t index) const { return xlate_.to_kafka(static_cast<int64_t>(index) - 1); }
  uint64_t index_of(int64_t kafka) const { return static_cast<uint64_t>(xlate_.to_log(kafka)) + 1; }
  uint64_t last_index() const;  // of the segment log and raft.internal (at load)
  uint64_t term_at(uint64_t index) const;       // from the internal entries (mirror)
  uint64_t term_at_node(uint64_t index) const;  // the node's view (0 when unknown)
  // The Kafka offset the next data record of the node's log takes (entries not yet handed out
  // included).
  int64_t kafka_end_of_node_log() const;

  std::string encode_slot(const StateSlot& s) const;
  std::string encode_internal(const Internal& e) const;

  log::PartitionLog& log_;
  log::IoRing& ring_;
  boost::asio::io_context& io_;
  ReplicaOptions options_;
  ReplicaEvents events_;
  std::unique_ptr<raft::Node> node_;
  log::OffsetTranslator xlate_;
  std::vector<Internal> internal_;  // Raft's own entries in the log, by index
  // Opens raft.state and raft.internal if release_fds() closed them, and marks the replica
  // used; false (errno set) if they cannot be opened.
  bool open_fds();
  void close_fds();
  // Its files and the log's active segment's, opened through the ring (none on the shard):
  // `then(0)` once all are open, `then(-errno)` otherwise. Runs `then` from a posted task.
  void open_fds_through_ring(std::function<void(int32_t)> then);
  std::string dir_;
  int state_fd_ = -1;
  int internal_fd_ = -1;
  uint64_t internal_size_ = 0;
  StateSlot state_;            // what raft.state holds (its newest slot)
  uint64_t snap_index_ = 0;    // the log starts after this index
  uint64_t snap_term_ = 0;
  raft::ConfState snap_conf_;  // the configuration in effect at snap_index_
  // Internal entries at or below the snapshot (terms for OffsetForLeaderEpoch).
  std::vector<std::pair<uint64_t, uint64_t>> pre_snapshot_;
  uint64_t mirrored_last_ = 0;  // the last index of the node's log handed out (or loaded)
  // The last entry this replica proposed as leader, and its term: the Produce path records a
  // proposal in the producers' table at once, before a Ready hands it out.
  uint64_t proposed_last_ = 0;
  uint64_t proposed_bytes_ = 0;  // of this leader's proposals not yet handed out in a Ready
  uint64_t proposed_term_ = 0;
  // LogSource reads run on the shard: what the log lacks comes through the ring
  // (PartitionLog::read_batches_now), and the node hears when (raft::Node::source_ready).
  // Per place read from: reads in a row there that sent loads and gave the node nothing.
  std::map<int64_t, int> source_short_;
  log::LogResult<std::vector<log::StoredBatch>> read_source(int64_t from, uint64_t max_bytes,
                                                            std::optional<Offset> limit);
  std::map<int32_t, int64_t> caught_up_ms_;  // leader: when each voter last reached the commit
  std::map<int32_t, uint64_t> lost_seen_;     // leader: Progress::lost_entries already logged
  std::map<int32_t, int64_t> heard_ms_;      // when each peer's last message arrived
  bool heard_recently(int32_t id) const;     // within an election timeout
  size_t slot_writes_ = 0;                   // raft.state writes in flight
  std::vector<int32_t> voters_;              // the configuration's voters (refreshed on commit)
  bool running_ = false;       // a Ready is being persisted
  size_t writing_ = 0;         // Readies advanced before durable (Plan::async), not yet durable
  bool persisting_ = false;    // ... and its writes started (its descriptors are in use)
  bool scheduled_ = false;     // run() is posted
  bool sleeping_ = false;      // not ticked by the shard until something reaches it (sleep())
  bool quiesced_seen_ = false;  // the node was quiesced when last looked at (schedule())
  bool silence_woke_ = false;   // peers_silent() ended the quiescence
  bool failed_ = false;
  uint64_t campaigns_seen_ = 0;  // node_->campaigns() when after_role_change() last looked
  bool failed_for_space_ = false;
  uint64_t appends_rejected_ = 0;
  int64_t reject_logged_ms_ = -10'000;  // the last line about a rejected append (one per 10 s)
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::multimap<uint64_t, Waiter> waiters_;  // by the Raft index of the batch's last record
  std::multimap<uint64_t, std::function<void(kafka::ErrorCode)>> commit_waiters_;
  uint64_t last_term_ = 0;
  int32_t last_leader_ = -1;
  raft::Role last_role_ = raft::Role::kFollower;
  uint64_t commit_persisted_ = 0;  // the commit hint in raft.state
};

// The Raft group id of a partition on the inter-broker wire: never 0 (the controller).
uint64_t partition_group_id(const std::array<uint8_t, 16>& topic_id, int32_t partition);

}  // namespace sluice::broker
