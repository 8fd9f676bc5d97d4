// Vocabulary of the Raft core: entries, messages, hard state, snapshots and configuration.
// Everything here is a plain value; nothing does I/O. See node.h for the contract between
// the core and its driver.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/bytes.h"
#include "common/ids.h"
#include "common/result.h"

namespace sluice::raft {

// A replica of a Raft group is named by the broker that hosts it.
using NodeId = BrokerId;
inline constexpr NodeId kNoNode{-1};

// Opaque entry bytes (for a data partition: one Kafka record batch). Immutable and shared:
// copying a Payload copies a reference, so an entry handed to the log, to several followers'
// messages and to the state machine is the same buffer.
class Payload {
 public:
  Payload() = default;
  static Payload copy_of(Bytes bytes);
  static Payload copy_of(std::string_view text) { return copy_of(as_bytes(text)); }
  // Takes ownership of an existing buffer without copying its bytes.
  static Payload adopt(std::vector<std::byte> bytes);

  size_t size() const { return buffer_ ? buffer_->size() : 0; }
  bool empty() const { return size() == 0; }
  Bytes bytes() const { return buffer_ ? Bytes(*buffer_) : Bytes(); }
  std::string_view text() const { return as_string_view(bytes()); }
  // True when both refer to the same buffer (not merely equal bytes).
  bool shares_buffer_with(const Payload& other) const { return buffer_ == other.buffer_; }
  friend bool operator==(const Payload& a, const Payload& b);

 private:
  std::shared_ptr<const std::vector<std::byte>> buffer_;
};

enum class EntryType : uint8_t {
  kNormal,  // application bytes (a record batch)
  kNoop,    // appended by a new leader to commit its term; never applied to the state machine
  kConfig,  // a complete ConfState (encode_conf_state); takes effect once committed
};

// One log position. `term` is the Kafka leader epoch of the batch stored there.
struct Entry {
  LogIndex index;
  Term term;
  EntryType type = EntryType::kNormal;
  Payload data;
  friend bool operator==(const Entry&, const Entry&) = default;
};

// Membership of a group. Voters elect and count for commit; learners only receive the log.
// Both lists are sorted and disjoint.
struct ConfState {
  std::vector<NodeId> voters;
  std::vector<NodeId> learners;
  bool is_voter(NodeId id) const;
  bool is_learner(NodeId id) const;
  bool is_member(NodeId id) const { return is_voter(id) || is_learner(id); }
  friend bool operator==(const ConfState&, const ConfState&) = default;
};
Payload encode_conf_state(const ConfState& conf);
Result<ConfState> decode_conf_state(Bytes bytes);
std::string to_string(const ConfState& conf);

// The state that must be durable before any message that depends on it is sent.
struct HardState {
  Term term;
  NodeId vote = kNoNode;
  LogIndex commit;  // may lag (recovered from peers); never needs its own fsync
  friend bool operator==(const HardState&, const HardState&) = default;
};

// A state machine image covering the log up to and including `index`. `data` is opaque to
// the core (for a data partition: the new log start; for the controller: the metadata
// image). index 0 means "no snapshot".
struct Snapshot {
  LogIndex index;
  Term term;
  ConfState conf;
  Payload data;
  bool empty() const { return *index == 0; }
};

enum class MessageType : uint8_t {
  kPreVote,
  kPreVoteResp,
  kVote,
  kVoteResp,
  kAppend,  // AppendEntries: entries after (index, log_term), and the leader's commit
  kAppendResp,
  kHeartbeat,
  kHeartbeatResp,
  kSnapshot,    // InstallSnapshot: the whole image in one message
  kTimeoutNow,  // leadership transfer: campaign now, even inside a leader lease
};
std::string_view to_string(MessageType type);

struct Message {
  MessageType type = MessageType::kHeartbeat;
  NodeId from = kNoNode;
  NodeId to = kNoNode;
  Term term;             // sender's term (for a granted kPreVoteResp: the term asked for)
  Term log_term;         // kAppend: term at `index`; votes: candidate's last term; reject hint term
  LogIndex index;        // kAppend: previous index; kAppendResp: last matched or rejected index
  LogIndex commit;       // leader's commit index (kAppend, kHeartbeat)
  LogIndex reject_hint;  // kAppendResp with reject: the follower's probe suggestion
  bool reject = false;
  bool force = false;  // a vote requested by leadership transfer ignores leader leases
  std::vector<Entry> entries;
  std::optional<Snapshot> snapshot;
};
std::string to_string(const Message& m);  // one line, for traces and datadriven tests

// Tunables. Timeouts count ticks; the driver decides how long a tick is.
struct Config {
  NodeId id = kNoNode;
  uint64_t seed = 0;             // feeds the election-timeout PRNG; nothing else is random
  uint32_t election_ticks = 10;  // randomized timeout is in [election_ticks, 2*election_ticks)
  uint32_t heartbeat_ticks = 1;
  bool pre_vote = true;
  bool check_quorum = true;          // leader steps down without a quorum; voters honour leases
  uint32_t max_inflight_msgs = 64;   // per follower, in replicate state
  uint64_t max_msg_bytes = 1 << 20;  // payload bytes per append (at least one entry is sent)
  uint64_t max_uncommitted_bytes = 64 << 20;  // proposals beyond this are refused
  uint64_t max_apply_bytes = 64 << 20;        // committed payload per Ready (at least one)
};

// What the driver recovered from disk. A fresh member of an existing group starts with
// everything empty; the initial members of a new group start from bootstrap().
struct RestoredState {
  HardState hard_state;
  Snapshot snapshot;
  std::vector<Entry> entries;  // contiguous, starting right after snapshot.index
  LogIndex applied;            // last index already applied (at least snapshot.index)
};
// The identical starting state of every initial member: one kConfig entry at index 1, term 1.
RestoredState bootstrap(const ConfState& conf);

enum class Errc : uint8_t {
  kNotLeader,
  kTransferring,        // leadership transfer in progress; retry at the new leader
  kTooManyUncommitted,  // back-pressure: max_uncommitted_bytes reached
  kConfigPending,       // a configuration change is not yet committed
  kInvalidConfig,       // not a single-server change, or learner not caught up
};
std::string_view to_string(Errc errc);

}  // namespace sluice::raft
