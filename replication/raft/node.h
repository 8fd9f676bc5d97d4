// The Raft consensus core: a pure, deterministic state machine. Ticks, peer messages and
// proposals go in; what to persist, what to send and what is committed come out in a Ready.
// No I/O, no clocks, no threads; the only randomness is a PRNG seeded from Config::seed.
//
// Persistence contract (the driver must follow it, or safety is lost):
//   1. take_ready() hands out one Ready at a time. Before anything else, the driver makes
//      durable, in this order: `snapshot` (replacing the whole log), then `entries` (an
//      entry at index i replaces the stored entry at i and every entry after it), then
//      `hard_state`. If `must_sync`, these writes are fsynced before step 2. When must_sync
//      is false only the commit index changed, which may be lost: it is re-learned.
//   2. Only then may `messages` be sent: a vote, a vote grant or an append acknowledgement
//      in them promises that the term, vote and entries behind it survive a crash.
//   3. Then advance(ready.persisted()) tells the node what is durable. A leader counts its
//      own log towards a commit quorum only up to what advance() reported.
//   4. `committed` entries may then be applied, in order. kNoop entries carry no data;
//      kConfig entries have already taken effect inside the node.
// A node that crashes loses whatever it had not made durable: on restart the driver builds
// RestoredState from exactly the durable snapshot, entries and hard state. A torn write
// may keep a prefix of a Ready's entries without its hard state; that is safe. A replica
// must never come back under the same id with a wiped disk: it could vote twice in a term.
// has_ready() stays false from take_ready() until advance(), so one Ready is in flight.
//
// Asynchronous writes (etcd's "async storage writes"): a driver may advance() a Ready before
// its entries are durable, reporting Persisted{} (nothing yet), if the Ready has no snapshot
// and no hard state other than a commit index, and its entries only append to what earlier
// Readies handed out (a leader's own proposals). It must then make those entries durable in
// order and report each run with persisted() once it is; its messages other than a leader's
// appends and heartbeats (which promise nothing about this disk) wait for that report, and any
// later Ready that is not of this kind is made durable only after them. Meanwhile the next
// Ready can be taken: the writes overlap. Committed entries are handed out only up to what
// is reported durable, and a leader counts its own log towards commit only up to it.
//
// The network may lose, duplicate, delay and reorder messages; the core tolerates all of it
// (lost appends are found through heartbeats, a lost snapshot is resent).
//
// Terms are Kafka leader epochs: every entry carries the term of the leader that created it.
//
// Not thread-safe; the owner (a partition's strand) calls it from one thread.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "replication/raft/internal/progress.h"
#include "replication/raft/internal/raft_log.h"
#include "replication/raft/types.h"

namespace sluice::raft {

enum class Role : uint8_t { kFollower, kPreCandidate, kCandidate, kLeader };
std::string_view to_string(Role role);

// What the driver reports back once a Ready is durable: the last entry it wrote.
struct Persisted {
  LogIndex index;  // the last index of the last entry written; 0: no entries were written
  Term term;
};

struct Ready {
  std::optional<HardState> hard_state;  // set when it changed
  std::optional<Snapshot> snapshot;     // install before entries
  std::vector<Entry> entries;           // append, replacing any stored suffix from entries[0]
  bool must_sync = false;
  std::vector<Message> messages;  // send only after the writes above are durable
  std::vector<Entry> committed;   // apply in order after persisting

  Persisted persisted() const;
};

// A read-only view of a node, for drivers, tests and the simulator's checkers.
struct NodeStatus {
  NodeId id = kNoNode;
  Role role = Role::kFollower;
  Term term;
  NodeId vote = kNoNode;
  NodeId leader = kNoNode;
  LogIndex commit;
  LogIndex applied;
  LogIndex first_index;  // first entry held in memory (snapshot.index + 1)
  LogIndex last_index;
  ConfState conf;
  NodeId transferee = kNoNode;
};

class Node {
 public:
  // `source` (optional, must outlive the node): where durable entries are read back from;
  // with it, only recent entries stay in memory.
  Node(const Config& config, const RestoredState& restored, LogSource* source = nullptr);

  void tick();                        // one logical time step; timeouts count ticks
  void step(const Message& message);  // a message from a peer (others' messages are dropped)
  // Appends an entry spanning `width` indexes; returns its first index.
  Result<LogIndex, Errc> propose(Payload payload, uint32_t width = 1);
  Result<LogIndex, Errc> propose(Bytes payload) { return propose(Payload::copy_of(payload)); }
  // Single-server changes only: add a learner, promote a caught-up learner, remove a member.
  // The change is a kConfig entry; it takes effect on every node when committed.
  Result<LogIndex, Errc> propose_conf(const ConfState& next);
  // A kControl entry (one index) with the application's bytes.
  Result<LogIndex, Errc> propose_control(Payload payload);
  Result<void, Errc> transfer_leadership(NodeId to);
  void campaign();  // start an election now (tests, manual failover)

  bool has_ready() const;
  Ready take_ready();
  void advance(const Persisted& persisted);
  // Entries of Readies advanced before they were durable are now, up to `persisted` (see the
  // contract above). A report for entries since replaced is ignored.
  void persisted(const Persisted& persisted);

  // The state machine image `data` covers the log up to `index` (<= applied). The node drops
  // the entries up to `index` from memory, sends this snapshot to followers that need them,
  // and returns it complete with term and configuration. The driver persists the returned
  // snapshot before it deletes those entries from disk.
  Snapshot compact(LogIndex index, Payload data);

  NodeStatus status() const;
  // A leader alone in its group (no other voter or learner, no configuration change or
  // leadership transfer pending) with its whole log durable and applied: a tick changes
  // nothing for it (no peer to send to or hear from, a quorum of itself), so a driver with
  // thousands of such groups may skip their ticks while this holds.
  bool alone() const;
  // Quiescence (Config::quiesce): the node neither heartbeats nor counts election time.
  bool quiesced() const { return quiesced_; }
  // The driver saw no frame from this follower's leader, or from a voter of this quiesced
  // leader, for an election timeout. A follower's lease is then over (quiesced or not: a
  // message may have ended its quiescence and restarted the lease): it campaigns at its turn,
  // as if the heartbeats had stopped. A quiesced leader heartbeats again and counts its
  // followers inactive: check-quorum steps it down unless a quorum answers. Nothing for a
  // leader that is not quiesced (its check-quorum runs) or a candidate.
  void peers_silent();
  // The LogSource answered an entries() call short because it was still bringing the entries
  // (LogSource::entries): it can answer now. A leader sends its followers what they lack
  // (within their windows) instead of waiting for their next responses, and committed entries
  // a short read kept from being applied are applied (has_ready()) instead of at the next tick.
  void source_ready();
  NodeId id() const { return id_; }
  Role role() const { return role_; }
  Term term() const { return Term{term_}; }
  // Elections this node started: pre-vote rounds (or vote rounds without pre-vote, and forced
  // ones); the vote round after a won pre-vote is the same election.
  uint64_t campaigns() const { return campaigns_; }
  NodeId leader() const { return lead_; }
  const detail::RaftLog& log() const { return log_; }
  // Leader only: the replication state of a peer (tests, ISR computation).
  const detail::Progress* progress(NodeId id) const;

 private:
  void become_follower(uint64_t term, NodeId lead);
  void become_pre_candidate();
  void become_candidate();
  void become_leader();
  void reset(uint64_t term);
  void start_election(bool pre_vote, bool forced);
  void tick_election();
  void tick_leader();
  bool step_term(const Message& m);
  void step_leader(const Message& m);
  void step_candidate(const Message& m);
  void step_follower(const Message& m);
  void handle_vote_request(const Message& m);
  void handle_append(const Message& m);
  void handle_heartbeat(const Message& m);
  void handle_snapshot(const Message& m);
  void handle_append_resp(const Message& m, detail::Progress& pr);
  void handle_heartbeat_resp(const Message& m, detail::Progress& pr);
  bool send_append(NodeId to, bool send_if_empty);
  void send_snapshot(NodeId to, detail::Progress& pr);
  void send_timeout_now(NodeId to);
  void bcast_append();
  void bcast_heartbeat(bool quiesce = false);
  bool can_quiesce() const;
  void unquiesce();
  bool maybe_commit();
  void on_commit_advanced();
  void apply_conf(const ConfState& conf, uint64_t index);
  void sync_progress_to_conf();
  uint64_t append_as_leader(EntryType type, Payload data, uint32_t width);
  bool quorum_active() const;
  size_t quorum() const { return conf_.voters.size() / 2 + 1; }
  bool promotable() const { return conf_.is_voter(id_); }
  void send(Message m);
  void reset_randomized_timeout();
  uint32_t election_timeout() const;
  uint64_t next_random();

  Config cfg_;
  NodeId id_;
  uint64_t term_ = 0;
  uint64_t campaigns_ = 0;
  NodeId vote_ = kNoNode;
  NodeId lead_ = kNoNode;
  Role role_ = Role::kFollower;
  detail::RaftLog log_;
  ConfState conf_;
  uint64_t conf_index_ = 0;                 // index of the committed config in effect
  uint64_t pending_conf_index_ = 0;         // last kConfig entry in the log (may be uncommitted)
  uint64_t conf_scanned_ = 0;               // committed entries up to here were checked for configs
  std::map<NodeId, detail::Progress> prs_;  // leader only; includes this node
  std::map<NodeId, bool> votes_;
  uint32_t election_elapsed_ = 0;
  uint32_t heartbeat_elapsed_ = 0;
  uint64_t timeout_draw_ = 0;       // random draw behind the current election timeout
  NodeId ballot_lead_ = kNoNode;    // the last leader heard from (election turns exclude it)
  uint64_t rng_state_;
  NodeId transferee_ = kNoNode;
  uint64_t uncommitted_bytes_ = 0;
  uint64_t term_start_index_ = 0;  // leader: index of this term's kNoop
  std::vector<Message> msgs_;
  HardState prev_hard_state_;
  std::optional<Snapshot> pending_snapshot_;  // received, to hand out in the next Ready
  bool bcast_pending_ = false;  // proposals since the last Ready: one batched append each
  bool ready_in_flight_ = false;
  bool quiesced_ = false;  // Config::quiesce: no ticks count until a message or proposal
  // Config changes committed but at indexes > snapshot: (index, conf), for compact().
  std::vector<std::pair<uint64_t, ConfState>> conf_history_;
};

}  // namespace sluice::raft
