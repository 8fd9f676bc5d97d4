// The group coordinator of a single node: FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
// LeaveGroup, OffsetCommit, OffsetFetch, ListGroups, DescribeGroups, DeleteGroups and
// OffsetDelete (kafka-protocol.md sections 4.7-4.10 and 7).
//
// Threads: a group lives on the shard that owns its __consumer_offsets partition
// (offsets_partition_for(group) -> host.shard_of(partition)). All of a group's state, its
// timers (one wake-up per shard at the earliest deadline, on_timer()) and its writes to the
// partition's log run on that one thread, so nothing is locked. A request arriving on another shard
// posts a task there; the reply callback may run later (parked JoinGroup/SyncGroup long polls) and
// on the group's shard: the broker's Reply mechanism carries it back to the connection, which still
// writes responses in request order. No shard ever blocks waiting for a group.
//
// Persistence: committed offsets and group metadata are records of __consumer_offsets
// (group_records.h) appended through the partition's PartitionLog like user data. An
// OffsetCommit is answered only once its records are durable; the in-memory offsets change
// only then. Group metadata is written when a generation becomes Stable or the group becomes
// Empty (without delaying the SyncGroup answers). Deleted groups, deleted offsets, expired
// offsets and offsets of deleted topics are tombstoned. load() replays the partitions at
// start-up, before the broker serves clients.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "broker/group.h"
#include "common/result.h"
#include "log/log.h"
#include "protocol/messages.h"

namespace sluice::broker {

// What the coordinator needs from the broker. Functions marked "(shard)" must be called on
// the shard owning the partition.
struct CoordinatorHost {
  uint32_t shard_count = 1;
  std::function<uint32_t(int32_t partition)> shard_of;  // owner of __consumer_offsets-partition
  std::function<void(uint32_t shard, std::function<void()>)> post;
  std::function<log::PartitionLog*(int32_t partition)> log_of;  // (shard) nullptr if not open
  std::function<void(int32_t partition)> after_append;          // (shard) kick I/O, wake fetches
  // (shard) Appends a batch through the partition's Raft group; `done` once it is committed.
  // Returns an error at once when this broker cannot (not the leader). Without it (tests),
  // batches go to log_of(partition) directly.
  std::function<kafka::ErrorCode(int32_t partition, MutableBytes batch,
                                 std::function<void(kafka::ErrorCode)> done)>
      replicate;
  std::function<int32_t(const std::string& topic)> partition_count;  // -1: no topic; any thread
  // The coordinator of groups on __consumer_offsets-partition; false while it has none. Any thread.
  std::function<bool(int32_t partition, std::string& host, int32_t& port, int32_t& node)> address;
  // (shard) Call on_timer(shard) on that shard at `steady_ms` (std::chrono::steady_clock, in ms
  // since its epoch), replacing any earlier request for the shard. Without it (tests), only
  // requests and tick() move the groups' timers.
  std::function<void(uint32_t shard, int64_t steady_ms)> wake_at;
};

struct CoordinatorOptions {
  int32_t partitions = 50;  // of __consumer_offsets
  GroupLimits limits;
  int64_t offsets_retention_ms = 7LL * 24 * 3600 * 1000;  // offsets.retention.minutes
};

struct GroupRequestContext {
  int16_t version = 0;
  std::string client_id;
  std::string client_host;  // "/127.0.0.1", as Kafka shows it
};

class GroupCoordinator {
 public:
  static constexpr const char* kTopic = "__consumer_offsets";
  static constexpr size_t kOffsetMetadataBytesMax = 4096;

  GroupCoordinator(const CoordinatorOptions& options, CoordinatorHost host);
  ~GroupCoordinator();

  // Replays every partition of __consumer_offsets (blocking; start-up only, the partitions
  // must be open). Afterwards the coordinator serves.
  Status load();
  // Periodic work of the groups on `shard` (offsets retention, offsets of deleted topics).
  // From its thread.
  void tick(uint32_t shard);
  // Deadlines (sessions, join and sync phases, the initial rebalance delay) due on `shard`,
  // when host.wake_at asked for it. From its thread.
  void on_timer(uint32_t shard);
  // Answers every parked request with NOT_COORDINATOR (clients look for the coordinator
  // again and rejoin after a restart). Blocking; from a non-shard thread at shutdown.
  void stop();
  // Leadership of __consumer_offsets partitions moves (Raft): the new leader loads the
  // partition's groups from its log once it serves; a replica that stops leading drops them
  // (members are told NOT_COORDINATOR and find the new coordinator). On the partition's shard.
  bool coordinating(int32_t partition) const;
  void take_over(int32_t partition);
  void resign(int32_t partition);

  // A group as the admin API and /metrics show it.
  struct GroupView {
    std::string group;
    const char* state = "";
    int32_t generation = 0;
    int32_t members = 0;
    std::map<TopicPartitionKey, int64_t> committed;  // committed offsets
  };
  // The groups coordinated on `shard` now (its partitions that this broker leads). From its
  // thread.
  std::vector<GroupView> views(uint32_t shard) const;

  template <class Resp>
  using Reply = std::function<void(const Resp&)>;
  void handle(const GroupRequestContext& ctx, const kafka::FindCoordinatorRequest& body,
              Reply<kafka::FindCoordinatorResponse> reply);
  void handle(const GroupRequestContext& ctx, const kafka::JoinGroupRequest& body,
              Reply<kafka::JoinGroupResponse> reply);
  void handle(const GroupRequestContext& ctx, const kafka::SyncGroupRequest& body,
              Reply<kafka::SyncGroupResponse> reply);
  void handle(const GroupRequestContext& ctx, const kafka::HeartbeatRequest& body,
              Reply<kafka::HeartbeatResponse> reply);
  void handle(const GroupRequestContext& ctx, const kafka::LeaveGroupRequest& body,
              Reply<kafka::LeaveGroupResponse> reply);
  void handle(const GroupRequestContext& ctx, const kafka::OffsetCommitRequest& body,
              Reply<kafka::OffsetCommitResponse> reply);
  void handle(const GroupRequestContext& ctx, const kafka::OffsetFetchRequest& body,
              Reply<kafka::OffsetFetchResponse> reply);
  void handle(const GroupRequestContext& ctx, const kafka::ListGroupsRequest& body,
              Reply<kafka::ListGroupsResponse> reply);
  void handle(const GroupRequestContext& ctx, const kafka::DescribeGroupsRequest& body,
              Reply<kafka::DescribeGroupsResponse> reply);
  void handle(const GroupRequestContext& ctx, const kafka::DeleteGroupsRequest& body,
              Reply<kafka::DeleteGroupsResponse> reply);
  void handle(const GroupRequestContext& ctx, const kafka::OffsetDeleteRequest& body,
              Reply<kafka::OffsetDeleteResponse> reply);
  // Offsets committed inside a transaction (written as the producer's transactional batch):
  // held apart until the transaction's marker on the partition commits them or drops them.
  void handle(const GroupRequestContext& ctx, const kafka::TxnOffsetCommitRequest& body,
              Reply<kafka::TxnOffsetCommitResponse> reply);
  // A transaction marker of `producer_id` was committed on __consumer_offsets-`partition`
  // (on its shard).
  void end_txn(int32_t partition, int64_t producer_id, bool commit);

  int32_t partition_of(const std::string& group) const;

 private:
  struct PartitionGroups;
  struct Write {
    ByteVec key;
    std::optional<ByteVec> value;  // nullopt: tombstone
  };

  kafka::ErrorCode not_loaded(const PartitionGroups& pg) const;
  // Runs `fn(partition state)` on the group's shard.
  void on_group_shard(const std::string& group, std::function<void(PartitionGroups&)> fn);
  Group* find(PartitionGroups& pg, const std::string& group);
  Group& find_or_create(PartitionGroups& pg, const std::string& group);
  // find(), after applying what is due now: a client that waited exactly a session timeout
  // sees the member gone even if the timer has not run yet (DescribeGroups, DeleteGroups).
  Group* due_now(PartitionGroups& pg, const std::string& group);
  // (shard) Appends records to the partition; `done(error)` once durable (or failed).
  void append(int32_t partition, std::vector<Write> writes,
              std::function<void(kafka::ErrorCode)> done,
              const kafka::RecordBatchBuilder::Options& options = {});
  // (shard) Persists the group's metadata if it changed; drops empty groups with no offsets.
  void after(int32_t partition, Group& group);
  // (shard) Files the group's next deadline (Group::next_deadline_ms) in its shard's queue and
  // asks the host for a wake-up when it is the earliest.
  void schedule(int32_t partition, const Group& group);
  void arm(uint32_t shard);
  void load_partition(int32_t partition, int64_t now_ms);
  void expire(int32_t partition, int64_t now_ms);

  CoordinatorOptions options_;
  CoordinatorHost host_;
  std::vector<std::unique_ptr<PartitionGroups>> partitions_;  // by partition; owner shard only
  std::vector<std::vector<int32_t>> shard_partitions_;        // by shard
  std::vector<uint64_t> ticks_;                               // by shard, owner shard only
  // Group deadlines, by shard (owner shard only): (when, partition, group) in time order, and
  // the time host.wake_at was last asked for. A group has at most one entry (PartitionGroups::
  // wake_ms); an entry of a group deleted since is dropped when it comes due.
  struct Timers {
    std::set<std::tuple<int64_t, int32_t, std::string>> due;
    int64_t armed_ms = Group::kNoDeadline;
  };
  std::vector<Timers> timers_;
};

}  // namespace sluice::broker
