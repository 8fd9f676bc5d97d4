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
#include <utility>
#include <vector>

#include "common/assert.h"
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
  // Refers to `bytes` inside a buffer that `owner` keeps alive (e.g. a produced batch inside
  // its request's buffer), without copying. Nobody may change those bytes afterwards.
  static Payload share(std::shared_ptr<const void> owner, Bytes bytes);
  // Refers to `size` bytes at `offset` of the open file `fd`, which `owner` keeps open, without
  // reading them: a leader's stored batches for a lagging follower, which the transport sends
  // from the file (sendfile) instead of from memory. Nobody may change those bytes while the
  // payload exists (a leader never rewrites its own log). Such a payload has no bytes in memory:
  // bytes() must not be called on it (in_file()); loaded() reads them.
  static Payload in_file(std::shared_ptr<const void> owner, int fd, uint64_t offset, size_t size);

  size_t size() const { return in_file() ? file_size_ : bytes_.size(); }
  bool empty() const { return size() == 0; }
  Bytes bytes() const {
    SLUICE_ASSERT(!in_file());  // loaded() first
    return bytes_;
  }
  std::string_view text() const { return as_string_view(bytes()); }
  bool in_file() const { return fd_ >= 0; }
  int file_fd() const { return fd_; }
  uint64_t file_offset() const { return file_offset_; }
  // The same bytes in memory: this payload unless in_file(), else a copy read from the file
  // (pread; an error when it fails or the file ends first). Blocking: not on a shard thread.
  Result<Payload> loaded() const;
  // True when both refer to the same bytes of the same buffer (not merely equal bytes).
  bool shares_buffer_with(const Payload& other) const {
    return owner_ == other.owner_ && bytes_.data() == other.bytes_.data() && fd_ == other.fd_ &&
           file_offset_ == other.file_offset_ && size() == other.size();
  }
  friend bool operator==(const Payload& a, const Payload& b);

 private:
  std::shared_ptr<const void> owner_;
  Bytes bytes_;
  int fd_ = -1;
  uint64_t file_offset_ = 0;
  size_t file_size_ = 0;
};

enum class EntryType : uint8_t {
  kNormal,  // application bytes (a record batch)
  kNoop,    // appended by a new leader to commit its term; never applied to the state machine
  kConfig,  // a complete ConfState (encode_conf_state); takes effect once committed
  kControl, // the application's own bytes beside its data (e.g. a partition's new log start);
            // one index; applied in log order like kNormal, opaque to the core
};

// One log entry. It spans `width` consecutive indexes, [index, index + width): a data
// partition's entry is one record batch and spans as many indexes as the batch has records
// (Raft index = log position, DESIGN.md "The partition log is the Raft log"). kNoop and
// kConfig entries have width 1. `term` is the Kafka leader epoch of the batch stored there.
struct Entry {
  LogIndex index;  // the first index it spans
  Term term;
  EntryType type = EntryType::kNormal;
  Payload data;
  uint32_t width = 1;  // >= 1
  uint64_t last() const { return *index + width - 1; }
  friend bool operator==(const Entry&, const Entry&) = default;
};

// Durable entries read back from the driver's storage (a data partition's segment files).
// A node given a LogSource keeps only recent entries in memory (Config::max_cached_bytes) and
// reads older ones here, e.g. for a follower that lags behind. Called on the node's thread.
class LogSource {
 public:
  virtual ~LogSource() = default;
  // Whole entries from the one starting at `lo` (an entry boundary) through the one containing
  // `hi`, in order, stopping once `max_bytes` of payload is reached (at least one entry).
  // Only durable entries the node has not replaced are asked for. Empty on a read error (the
  // node tries again at the follower's next response). A source that must not block (it
  // brings what it lacks in the background) may also answer with fewer entries, or none, and
  // call Node::source_ready() once it has them.
  virtual std::vector<Entry> entries(LogIndex lo, LogIndex hi, uint64_t max_bytes) = 0;
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
  // kHeartbeat: the group is idle and everyone has everything; the leader stops heartbeating
  // and a follower with the whole log stops its election timer (Config::quiesce).
  bool quiesce = false;
  std::vector<Entry> entries;
  std::optional<Snapshot> snapshot;
};
std::string to_string(const Message& m);  // one line, for traces and datadriven tests
// A leader's appends, heartbeats, snapshots and transfers promise nothing about the sender's
// disk: a driver may send them before the Ready's writes are durable (asynchronous writes).
// Votes and acknowledgements wait for the disk.
inline bool promises_nothing_durable(const Message& m) {
  return m.type == MessageType::kAppend || m.type == MessageType::kHeartbeat ||
         m.type == MessageType::kSnapshot || m.type == MessageType::kTimeoutNow;
}

// Tunables. Timeouts count ticks; the driver decides how long a tick is.
struct Config {
  NodeId id = kNoNode;
  uint64_t seed = 0;             // feeds the election-timeout PRNG; nothing else is random
  // Randomized timeout in [election_ticks, 2*election_ticks). Once a leader was heard from,
  // its followers split that range into disjoint turns (Node::election_timeout).
  uint32_t election_ticks = 10;
  // The same on every member of a group (0 will do): orders the followers' turns, so that the
  // turns of a broker's many groups are spread over the other brokers.
  uint64_t ballot_key = 0;
  uint32_t heartbeat_ticks = 1;
  bool pre_vote = true;
  bool check_quorum = true;          // leader steps down without a quorum; voters honour leases
  uint32_t max_inflight_msgs = 64;   // per follower, in replicate state
  // Payload bytes of the appends in flight per follower, in replicate state (0: no bound);
  // one append more may go beyond it. Keep it under what the transport buffers per peer,
  // or a lagging follower's catch-up outruns the transport, which drops the excess.
  uint64_t max_inflight_bytes = 0;
  uint64_t max_msg_bytes = 1 << 20;  // payload bytes per append (at least one entry is sent)
  uint64_t max_uncommitted_bytes = 64 << 20;  // proposals beyond this are refused
  uint64_t max_apply_bytes = 64 << 20;        // committed payload per Ready (at least one)
  // With a LogSource: payload bytes of durable, applied entries kept in memory; older ones are
  // dropped and read back from the source when needed (0 keeps none: idle groups cost no
  // entry memory). Without a source every entry since the snapshot stays in memory.
  uint64_t max_cached_bytes = 1 << 20;
  // Quiescence: a leader whose followers all hold its whole log, committed and applied, with
  // nothing pending, sends one last heartbeat marked `quiesce` and stops ticking; followers
  // that hold the whole log stop their election timers. Any message or proposal ends it. The
  // driver must then watch the peers' liveness itself (every broker pair exchanges frames)
  // and call Node::peers_silent() on a quiesced node whose leader, or whose quorum, went
  // silent for an election timeout: idle groups then cost no messages and no ticks.
  // Followers honour a quiesce heartbeat whatever their own setting.
  bool quiesce = false;
};

// What the driver recovered from disk. A fresh member of an existing group starts with
// everything empty; the initial members of a new group start from bootstrap().
struct RestoredState {
  HardState hard_state;
  Snapshot snapshot;
  // With a LogSource, the durable log (snapshot.index, source_last] stays in the source:
  // `term_starts` gives the term of every index in it as (first index of a term, term) pairs,
  // ascending (an entry of term T at index i means term_starts has a pair (j <= i, T) and no
  // later pair at or below i), and `source_confs` lists its kConfig entries (index, conf) in
  // order. Zero when everything is in `entries`.
  LogIndex source_last;
  std::vector<std::pair<LogIndex, Term>> term_starts;
  std::vector<std::pair<LogIndex, ConfState>> source_confs;
  std::vector<Entry> entries;  // contiguous, after source_last (or snapshot.index when zero)
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
