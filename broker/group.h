// One consumer group's state machine (kafka-protocol.md section 7, the classic protocol):
// members, generations, protocol selection, the join and sync phases, session expiry, static
// membership, and the committed offsets.
//
// Pure: no I/O, no clock (every call takes `now_ms`), no threads. Parked JoinGroup/SyncGroup
// requests are callbacks stored on the member and called later, from tick() or from another
// member's request; the caller (GroupCoordinator) runs everything of one group on one shard
// thread, so callbacks run on that thread too. Not thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "protocol/error_codes.h"

namespace sluice::broker {

enum class GroupState : uint8_t {
  kEmpty,
  kPreparingRebalance,
  kCompletingRebalance,
  kStable,
  kDead
};
const char* group_state_name(GroupState state);

struct GroupLimits {
  int32_t min_session_timeout_ms = 6000;
  int32_t max_session_timeout_ms = 1800000;
  // group.initial.rebalance.delay.ms (Kafka's default): an empty group's first rebalance waits
  // this long for more members, again for each newcomer, at most the rebalance timeout.
  int32_t initial_rebalance_delay_ms = 3000;
  size_t metadata_bytes_max = 1 << 20;  // per member, all protocols together
  size_t members_max = 10000;           // group.max.size
};

using ByteVec = std::vector<std::byte>;

struct JoinResult {
  kafka::ErrorCode error = kafka::ErrorCode::kNone;
  int32_t generation = -1;
  std::string protocol;
  std::string leader;
  std::string member_id;
  struct MemberInfo {
    std::string member_id;
    std::optional<std::string> instance_id;
    ByteVec metadata;
  };
  std::vector<MemberInfo> members;  // the leader's response only
};
using JoinCallback = std::function<void(JoinResult)>;

struct SyncResult {
  kafka::ErrorCode error = kafka::ErrorCode::kNone;
  ByteVec assignment;
};
using SyncCallback = std::function<void(SyncResult)>;

struct JoinArgs {
  std::string member_id;
  std::optional<std::string> instance_id;
  std::string client_id;
  std::string client_host;
  int32_t session_timeout_ms = 0;
  int32_t rebalance_timeout_ms = -1;
  std::string protocol_type;
  std::vector<std::pair<std::string, ByteVec>> protocols;
  bool member_id_required = false;  // JoinGroup v4+: answer MEMBER_ID_REQUIRED for new ids
};

// The topics a "consumer" protocol member subscribes to (kafka-protocol.md 7.6); empty when the
// metadata does not parse.
std::vector<std::string> subscribed_topics(const ByteVec& metadata);

struct Member {
  std::string id;
  std::optional<std::string> instance_id;
  std::string client_id;
  std::string client_host;
  int32_t session_timeout_ms = 0;
  int32_t rebalance_timeout_ms = 0;
  std::vector<std::pair<std::string, ByteVec>> protocols;
  ByteVec assignment;
  JoinCallback join_waiter;
  SyncCallback sync_waiter;
  int64_t deadline_ms = 0;  // session expiry
  const ByteVec* metadata_for(const std::string& protocol) const;
};

struct CommittedOffset {
  int64_t offset = -1;
  int32_t leader_epoch = -1;
  std::string metadata;
  int64_t commit_ms = 0;
};

using TopicPartitionKey = std::pair<std::string, int32_t>;

class Group {
 public:
  Group(std::string id, const GroupLimits& limits, uint64_t seed);
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;

  const std::string& id() const { return id_; }
  GroupState state() const { return state_; }
  int32_t generation() const { return generation_; }
  const std::string& protocol_type() const { return protocol_type_; }
  const std::string& protocol() const { return protocol_; }
  const std::string& leader() const { return leader_; }
  const std::map<std::string, Member>& members() const { return members_; }
  bool has_member(const std::string& id) const { return members_.count(id) > 0; }

  // JoinGroup. `done` runs at once (errors, MEMBER_ID_REQUIRED, immediate answers) or later,
  // when the join phase completes.
  void join(const JoinArgs& args, int64_t now_ms, JoinCallback done);
  void sync(const std::string& member_id, const std::optional<std::string>& instance_id,
            int32_t generation, std::vector<std::pair<std::string, ByteVec>> assignments,
            int64_t now_ms, SyncCallback done);
  kafka::ErrorCode heartbeat(const std::string& member_id,
                             const std::optional<std::string>& instance_id, int32_t generation,
                             int64_t now_ms);
  // One member of a LeaveGroup (member id, or the instance id when the member id is empty).
  kafka::ErrorCode leave(const std::string& member_id,
                         const std::optional<std::string>& instance_id, int64_t now_ms);
  // Kafka's validateOffsetCommit (7.4). kNone: the commit may be stored.
  kafka::ErrorCode validate_commit(const std::string& member_id,
                                   const std::optional<std::string>& instance_id,
                                   int32_t generation, int64_t now_ms);
  // Session expiry, join-phase and sync-phase deadlines: everything due at `now_ms` happens.
  void tick(int64_t now_ms);
  // The earliest time at which tick() has something to do (a session, the end of the initial
  // delay or of the join or sync phase); kNoDeadline when nothing is pending. The coordinator
  // arms a timer for it, so members expire at their deadline, not at the next periodic tick.
  static constexpr int64_t kNoDeadline = INT64_MAX;
  int64_t next_deadline_ms() const;
  // Answers every parked request with `error` and marks the group Dead (deletion, shutdown).
  void shut(kafka::ErrorCode error);

  // Restores state read back from __consumer_offsets: members come back Stable with fresh
  // session deadlines (so consumers that keep heartbeating need no rebalance).
  void restore(std::string protocol_type, int32_t generation, std::string protocol,
               std::string leader, std::vector<Member> members, int64_t now_ms);

  // True once since the last call when the group metadata worth persisting changed (a
  // generation became Stable or the group became Empty).
  bool take_metadata_dirty() { return std::exchange(metadata_dirty_, false); }
  int64_t empty_since_ms() const { return empty_since_ms_; }

  // Committed offsets (the coordinator persists before calling commit()).
  std::map<TopicPartitionKey, CommittedOffset>& offsets() { return offsets_; }
  const std::map<TopicPartitionKey, CommittedOffset>& offsets() const { return offsets_; }

 private:
  std::string new_member_id(const std::string& prefix);
  kafka::ErrorCode check_protocols(const JoinArgs& args) const;
  void add_member(const JoinArgs& args, const std::string& id, int64_t now_ms, JoinCallback done);
  void update_member(Member& m, const JoinArgs& args, int64_t now_ms);
  void prepare_rebalance(int64_t now_ms);
  void maybe_complete_join(int64_t now_ms);
  void complete_join(int64_t now_ms);
  void remove_member(const std::string& id, int64_t now_ms);
  std::string select_protocol() const;
  JoinResult join_result(const Member& m, bool with_members) const;
  kafka::ErrorCode check_member(const std::string& member_id,
                                const std::optional<std::string>& instance_id) const;
  void become_empty(int64_t now_ms);
  void rejoin_static(Member m, const JoinArgs& args, int64_t now_ms, JoinCallback done);
  bool subscription_changed(const Member& m, const JoinArgs& args) const;
  bool may_expire(const Member& m) const;
  bool all_joined() const;

  // Up to 8 member ids, for log lines.
  std::string member_list() const;
  std::string id_;
  GroupLimits limits_;
  std::mt19937_64 rng_;
  GroupState state_ = GroupState::kEmpty;
  int32_t generation_ = 0;
  std::string protocol_type_;
  std::string protocol_;
  std::string leader_;
  std::map<std::string, Member> members_;
  std::vector<std::string> join_order_;                // member ids, oldest first
  std::map<std::string, int64_t> pending_;             // MEMBER_ID_REQUIRED ids -> expiry
  std::map<std::string, std::string> static_members_;  // instance id -> member id
  int64_t join_deadline_ms_ = 0;
  int64_t initial_delay_until_ms_ = 0;
  int64_t sync_deadline_ms_ = 0;
  int64_t empty_since_ms_ = 0;
  bool metadata_dirty_ = false;
  std::map<TopicPartitionKey, CommittedOffset> offsets_;
};

}  // namespace sluice::broker
