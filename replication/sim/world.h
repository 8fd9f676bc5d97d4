// A deterministic, single-threaded world of Raft nodes for tests: simulated disks (durable
// writes, torn writes, lost unsynced state), a simulated network (delay, drop, duplicate,
// reorder, symmetric and asymmetric partitions) and a checker of Raft's safety properties
// that runs on every event. Everything random comes from one seed.
//
// Two modes. Timed (the random simulator, the benchmark): step() advances simulated time by
// one unit, ticking each node every `tick_units` and delivering messages after a random
// latency. Manual (unit and datadriven tests): messages wait in a FIFO until deliver() or
// stabilize(), and nodes tick only when told to.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "replication/raft/node.h"

namespace sluice::raft::sim {

class Rng {  // splitmix64: small, fast, and the same on every platform
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next();
  uint64_t uniform(uint64_t n) { return n == 0 ? 0 : next() % n; }  // [0, n)
  uint64_t between(uint64_t lo, uint64_t hi) { return lo + uniform(hi - lo + 1); }
  bool chance(double p) { return static_cast<double>(next() >> 11) * 0x1.0p-53 < p; }

 private:
  uint64_t state_;
};

// What a node has on disk. Everything here is durable except `unsynced_commit`, a commit
// index written without fsync that a crash loses.
struct Disk {
  HardState hard_state;
  Snapshot snapshot;
  std::vector<Entry> entries;  // contiguous, starting at snapshot.index + 1
  std::optional<LogIndex> unsynced_commit;
  uint64_t last_index() const { return entries.empty() ? *snapshot.index : entries.back().last(); }
  // The position in `entries` of the first entry that ends at or after `index`.
  size_t position(uint64_t index) const;
  std::optional<Term> term_at(uint64_t index) const;  // of the entry containing `index`
};

class World;

// A node's LogSource backed by its simulated disk: what a data partition's segment files are.
// It fails (returns nothing) now and then, and reports a request for anything but durable
// whole entries to the checker.
class DiskSource : public LogSource {
 public:
  DiskSource(World* world, NodeId id) : world_(world), id_(id) {}
  std::vector<Entry> entries(LogIndex lo, LogIndex hi, uint64_t max_bytes) override;
  uint64_t reads() const { return reads_; }
  int fail_next = 0;  // tests: this many reads fail before the random ones
  std::vector<uint64_t> asked_from;  // tests: `lo` of every read

 private:
  World* world_;
  NodeId id_;
  uint64_t reads_ = 0;
};

// A tiny state machine: a hash chain over the applied entries. Its snapshot is 16 bytes.
struct StateMachine {
  uint64_t applied = 0;
  uint64_t hash = 0;
  Payload encode() const;
  static StateMachine decode(const Payload& data);
};

struct Replica {
  NodeId id;
  std::unique_ptr<Node> node;  // null while crashed
  Disk disk;
  StateMachine sm;
  std::unique_ptr<DiskSource> source;  // set while up when WorldOptions::log_source
  bool torn_next_ready = false;  // crash in the middle of persisting the next Ready
  // WorldOptions::async_writes: a leader's Readies advanced before their entries are on the
  // disk, in order, each made durable (and reported) at `at`.
  struct PendingWrite {
    uint64_t at;
    std::vector<Entry> entries;
    std::vector<Message> messages;  // other than a leader's: sent once durable
  };
  std::deque<PendingWrite> pending;
  uint64_t restarts = 0;
  bool up() const { return node != nullptr; }
};

struct NetFaults {
  double drop = 0;
  double duplicate = 0;
  uint32_t latency_min = 1;  // time units; reordering comes from the spread
  uint32_t latency_max = 1;
};

struct WorldOptions {
  uint64_t seed = 1;
  bool manual = false;
  uint32_t tick_units = 10;  // timed mode: a node ticks every this many units
  Config node_config;        // id and seed are filled in per node
  bool check = true;         // run the safety checker
  // Give every node a DiskSource: only node_config.max_cached_bytes of entries stay in
  // memory, older ones are read back from the disk (which fails with `source_failure`), and
  // a restart leaves a random prefix of the disk's entries in the source.
  bool log_source = false;
  double source_failure = 0;
  // Timed mode: the chance that a read answers nothing because the source is still bringing
  // the entries (a source that must not block, as the broker's on a shard): the world calls
  // the node's source_ready() a few time units later.
  double source_deferred = 0;
  // Timed mode: a leader's Readies that only append its own entries (no snapshot, no term or
  // vote change) are advanced at once and written a few time units later, in order, as the
  // broker's replicas do (Node::persisted(), etcd's asynchronous storage writes); the next
  // Ready is taken meanwhile. A crash loses those not yet written. Any other Ready first
  // waits for them.
  bool async_writes = false;
};
// With node_config.quiesce, timed mode plays the driver's part of quiescence: every node
// hears from each up node whose link to it is up, at each of its ticks (the broker pairs'
// frames; dropped like any message), and a follower that has not heard from its leader, or
// a quiesced leader from one of its voters, for an election timeout is told so
// (Node::peers_silent).

uint64_t hash_bytes(Bytes bytes, uint64_t seed = 0xcbf29ce484222325ULL);
uint64_t entry_hash(const Entry& e);  // type, width and payload; what the checker compares

// Raft's safety properties, checked as events happen. The first violation is kept.
class Checker {
 public:
  void on_persist(const Replica& r, uint64_t first_new_index);
  void on_apply(NodeId id, const Entry& e);
  void on_leader_commit(const Node& leader);
  void on_leader(const Node& leader, const Disk& disk);
  void check_durable(const std::map<NodeId, Replica>& replicas);  // after disks_changed()
  void disks_changed() { recheck_durable_ = true; }
  void fail(std::string what);

  bool ok() const { return failure_.empty(); }
  const std::string& failure() const { return failure_; }
  uint64_t max_committed() const { return committed_.size(); }
  // term and hash of the committed entry covering `index` (>= 1)
  std::pair<uint64_t, uint64_t> committed(uint64_t index) const {
    return {committed_[index - 1].term, committed_[index - 1].hash};
  }

 private:
  std::map<uint64_t, NodeId> leaders_;  // term -> the node that led it
  // Log matching, per index: within a term, the entries seen anywhere never overlap unless
  // identical (same first index, width, type, payload and the same term before it), so a
  // term at an index names one entry, and the term before it, everywhere.
  struct Seen {
    uint64_t width, hash, prev_term;
  };
  std::unordered_map<uint64_t, std::map<uint64_t, Seen>> entries_;  // term -> first index -> entry
  struct Applied {
    uint64_t term = 0, hash = 0, first = 0, last = 0;  // the entry covering the index
    bool operator==(const Applied&) const = default;
  };
  std::vector<Applied> committed_;  // state machine safety, per index
  // committed-never-lost: the newest commit and the voters that acknowledged it
  uint64_t durable_index_ = 0, durable_term_ = 0;
  std::vector<NodeId> durable_voters_, durable_voters_prev_;
  bool recheck_durable_ = true;
  std::string failure_;
};

class World {
 public:
  explicit World(const WorldOptions& options);

  void add_node(NodeId id, const RestoredState& restored);
  // The initial members 1..n of a fresh group, all voters.
  void bootstrap(int n);
  Replica& replica(NodeId id) { return replicas_.at(id); }
  const std::map<NodeId, Replica>& replicas() const { return replicas_; }
  Node* node(NodeId id) { return replicas_.at(id).node.get(); }
  Node* leader();  // the up leader with the highest term, if any

  // Network.
  void set_faults(const NetFaults& faults) { faults_ = faults; }
  void cut(NodeId from, NodeId to) { cut_.insert({from, to}); }  // one direction
  void isolate(NodeId id);
  void partition(const std::vector<std::vector<NodeId>>& groups);
  void heal() { cut_.clear(); }
  bool link_up(NodeId from, NodeId to) const { return !cut_.contains({from, to}); }
  size_t in_flight() const { return manual_queue_.size() + timed_queue_.size(); }

  // Nodes.
  void crash(NodeId id);
  void restart(NodeId id);
  void tick(NodeId id);  // manual mode
  Result<LogIndex, Errc> propose(NodeId id, Payload data, uint32_t width = 1);
  Snapshot compact(NodeId id);  // snapshot the state machine at its applied index
  void process_ready(Replica& r);
  void complete_writes(Replica& r, uint64_t until);  // pending writes due by `until`

  // Manual mode: deliver queued messages (all, or only those to/from `only`). Each delivered
  // message is appended to `trace` when given. Returns the number delivered.
  size_t deliver(std::vector<std::string>* trace = nullptr, NodeId only = kNoNode);
  void stabilize(std::vector<std::string>* trace = nullptr);
  void drop_queued(NodeId id);  // drop every queued message from or to `id`

  // Timed mode: one unit of simulated time.
  void step();
  uint64_t now() const { return now_; }

  Checker& checker() { return checker_; }
  Rng& rng() { return rng_; }
  uint64_t trace_hash() const { return trace_hash_; }
  void mix_trace(uint64_t v);
  uint64_t delivered() const { return delivered_; }
  uint64_t delivered(MessageType t) const { return by_type_[static_cast<size_t>(t)]; }
  uint64_t delivered_quiesce() const { return quiesce_delivered_; }
  uint64_t async_writes() const { return async_writes_; }  // WorldOptions::async_writes
  const WorldOptions& options() const { return opts_; }
  uint64_t source_reads() const;
  // A DiskSource read was deferred (WorldOptions::source_deferred): step() tells the node a
  // few units later.
  void defer_source_ready(NodeId id);
  uint64_t deferred_reads() const { return deferred_reads_; }

 private:
  struct InFlight {
    uint64_t at, seq;
    Message m;
    bool operator>(const InFlight& o) const { return at != o.at ? at > o.at : seq > o.seq; }
  };
  void send(const Message& m);
  void deliver_one(const Message& m, std::vector<std::string>* trace);
  void persist(Replica& r, const Ready& rd, bool torn);
  void apply(Replica& r, const Ready& rd);
  void observe(Replica& r);
  void watch_liveness(NodeId id, Replica& r);

  WorldOptions opts_;
  Rng rng_;
  std::map<NodeId, Replica> replicas_;
  NetFaults faults_;
  std::set<std::pair<NodeId, NodeId>> cut_;
  std::map<std::pair<NodeId, NodeId>, uint64_t> heard_;  // (node, peer) -> last time heard
  std::deque<Message> manual_queue_;
  std::priority_queue<InFlight, std::vector<InFlight>, std::greater<>> timed_queue_;
  std::multimap<uint64_t, NodeId> source_ready_at_;
  uint64_t now_ = 0, seq_ = 0, delivered_ = 0, quiesce_delivered_ = 0, deferred_reads_ = 0;
  uint64_t async_writes_ = 0;
  uint64_t by_type_[16] = {};
  uint64_t trace_hash_ = 0xcbf29ce484222325ULL;
  Checker checker_;
};

}  // namespace sluice::raft::sim
