#include "replication/sim/random_sim.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "replication/sim/world.h"

namespace sluice::raft::sim {
namespace {

class Simulation {
 public:
  explicit Simulation(const SimOptions& o)
      : opts_(o), rng_(o.seed ^ 0x51ce5eedULL), world_(make_options()) {
    voters_ = rng_.chance(0.5) ? 3 : 5;
    world_.bootstrap(voters_);
    spare_ = NodeId{voters_ + 1};
    world_.add_node(spare_, RestoredState{});
    world_.set_faults(faults_);
    for (const auto& [id, r] : world_.replicas()) down_until_[id] = 0;
  }

  SimResult run() {
    for (uint64_t t = 0; t < opts_.chaos_units && world_.checker().ok(); ++t) {
      world_.step();
      chaos();
    }
    if (world_.checker().ok()) liveness();
    result_.ok = world_.checker().ok() && result_.failure.empty();
    if (result_.failure.empty()) result_.failure = world_.checker().failure();
    result_.trace_hash = world_.trace_hash();
    result_.committed = world_.checker().max_committed();
    result_.snapshots_sent = world_.delivered(MessageType::kSnapshot);
    result_.transfers = world_.delivered(MessageType::kTimeoutNow);
    result_.quiesces = world_.delivered_quiesce();
    result_.async_writes = world_.async_writes();
    result_.source_reads = world_.source_reads();
    result_.deferred_reads = world_.deferred_reads();
    return result_;
  }

 private:
  WorldOptions make_options() {
    WorldOptions w;
    w.seed = opts_.seed;
    w.tick_units = 10;
    Config& c = w.node_config;
    c.election_ticks = 10;
    c.heartbeat_ticks = 2;
    c.pre_vote = rng_.chance(0.8);
    c.check_quorum = rng_.chance(0.8);
    c.max_inflight_msgs = static_cast<uint32_t>(rng_.between(1, 8));
    c.max_msg_bytes = rng_.between(16, 256);  // a few entries per append: exercises batching
    // Half the runs bound the bytes in flight per follower too (below a message or a few).
    c.max_inflight_bytes = rng_.chance(0.5) ? rng_.between(8, 600) : 0;
    c.max_uncommitted_bytes = 4096;
    // Half the runs let idle groups quiesce, the world watching liveness (world.h).
    c.quiesce = rng_.chance(0.5);
    // Half the runs keep (almost) no entries in memory and read them back from the disk.
    w.log_source = rng_.chance(0.5);
    if (w.log_source) {
      static constexpr uint64_t kCached[] = {0, 0, 64, 400};
      c.max_cached_bytes = kCached[rng_.uniform(4)];
      w.source_failure = 0.03;
      // Half of those read as the broker does on a shard: a read may answer nothing while
      // the source brings the entries, which it reports with Node::source_ready().
      if (rng_.chance(0.5)) w.source_deferred = 0.1;
    }
    static constexpr double kIntensity[] = {0.5, 1, 3, 8};
    intensity_ = kIntensity[rng_.uniform(4)];
    static constexpr double kDrop[] = {0, 0.01, 0.05, 0.15};
    static constexpr double kDup[] = {0, 0.02, 0.1};
    static constexpr uint32_t kLatency[] = {2, 5, 15, 40};
    faults_.drop = kDrop[rng_.uniform(4)];
    faults_.duplicate = kDup[rng_.uniform(3)];
    faults_.latency_min = 1;
    faults_.latency_max = kLatency[rng_.uniform(4)];
    // Half the runs write a leader's own appends asynchronously, as the broker's replicas do.
    w.async_writes = async_ = rng_.chance(0.5);
    return w;
  }

  // SLUICE_SIM_TRACE=1 prints the run's events (a replay tool; silent otherwise).
  void event(const std::string& what) {
    if (trace_) std::fprintf(stderr, "t=%llu %s\n", (unsigned long long)world_.now(), what.c_str());
  }
  static std::string str(NodeId id) { return std::to_string(*id); }

  std::vector<NodeId> ids() const {
    std::vector<NodeId> out;
    for (const auto& [id, r] : world_.replicas()) out.push_back(id);
    return out;
  }
  NodeId pick(const std::vector<NodeId>& from) { return from[rng_.uniform(from.size())]; }

  void chaos() {
    for (auto& [id, until] : down_until_) {
      if (!world_.replica(id).up() && world_.now() >= until) {
        world_.restart(id);
        event("restart " + str(id));
      }
    }
    // Now and then the load stops for a while: idle groups quiesce (when the run lets them).
    if (rng_.chance(0.001)) idle_until_ = world_.now() + rng_.between(200, 1500);
    if (world_.now() >= idle_until_ && rng_.chance(0.08)) propose();
    if (rng_.chance(0.002 * intensity_)) change_network();
    if (rng_.chance(0.0015 * intensity_)) crash();
    if (rng_.chance(0.001 * intensity_)) crash_leader();
    if (rng_.chance(0.002)) change_membership();
    if (rng_.chance(0.002)) compact();
    if (rng_.chance(0.0007)) transfer();
    if (async_ && rng_.chance(0.003 * intensity_)) crash_writing_leader();
    note_leader();
  }

  void note_leader() {
    if (Node* l = world_.leader(); l && *l->term() > last_leader_term_) {
      last_leader_term_ = *l->term();
      ++result_.elections;
      event("leader " + str(l->id()) + " term " + std::to_string(last_leader_term_) + " " +
            to_string(l->status().conf));
    }
  }

  void propose() {
    Node* l = world_.leader();
    if (!l) return;
    std::string data = "p" + std::to_string(next_payload_++);
    (void)world_.propose(l->id(), Payload::copy_of(data), width());
  }

  // An entry is a record batch spanning one index per record: mostly small, sometimes large.
  uint32_t width() {
    if (rng_.chance(0.6)) return static_cast<uint32_t>(rng_.between(1, 3));
    if (rng_.chance(0.93)) return static_cast<uint32_t>(rng_.between(4, 50));
    return static_cast<uint32_t>(rng_.between(100, 1000));
  }

  void change_network() {
    const auto all = ids();
    const uint64_t kind = rng_.uniform(5);
    static constexpr const char* kKinds[] = {"heal", "isolate", "split", "cut one way",
                                             "leader one way"};
    event(std::string("network: ") + kKinds[kind]);
    switch (kind) {
      case 0:
        world_.heal();
        break;
      case 1:
        world_.isolate(pick(all));
        break;
      case 2: {  // split into two random groups
        std::vector<std::vector<NodeId>> groups(2);
        for (NodeId id : all) groups[rng_.uniform(2)].push_back(id);
        world_.partition(groups);
        break;
      }
      case 3:
        world_.cut(pick(all), pick(all));
        break;  // one direction only
      case 4:   // the leader can hear but not speak (or the reverse)
        if (Node* l = world_.leader()) {
          const bool outbound = rng_.chance(0.5);
          for (NodeId id : all) {
            if (id != l->id()) outbound ? world_.cut(l->id(), id) : world_.cut(id, l->id());
          }
        }
        break;
    }
  }

  void crash() {
    std::vector<NodeId> up;
    for (const auto& [id, r] : world_.replicas()) {
      if (r.up()) up.push_back(id);
    }
    if (up.empty()) return;
    const NodeId victim = pick(up);
    ++result_.crashes;
    event("crash " + str(victim));
    down_until_[victim] = world_.now() + rng_.between(20, 1500);
    if (rng_.chance(0.5)) {
      world_.replica(victim).torn_next_ready = true;  // dies while writing its next Ready
      down_until_[victim] = world_.now();             // restarts right after that crash
    } else {
      world_.crash(victim);
    }
  }

  void crash_leader() {  // leaders that die soon after appending: the figure-8 shape
    Node* l = world_.leader();
    if (!l) return;
    ++result_.crashes;
    event("crash leader " + str(l->id()));
    down_until_[l->id()] = world_.now() + rng_.between(20, 400);
    world_.crash(l->id());
  }

  // Async writes: a leader dies while its own appends are still being written (those it had
  // not written are lost, though its followers may have acknowledged them).
  void crash_writing_leader() {
    Node* l = world_.leader();
    if (!l || world_.replica(l->id()).pending.empty()) return;
    ++result_.crashes;
    event("crash writing leader " + str(l->id()));
    down_until_[l->id()] = world_.now() + rng_.between(20, 400);
    world_.crash(l->id());
  }

  void change_membership() {
    Node* l = world_.leader();
    if (!l) return;
    ConfState next = l->status().conf;
    if (!next.learners.empty()) {
      const NodeId learner = next.learners.front();
      std::erase(next.learners, learner);
      if (rng_.chance(0.8)) {  // promote (refused unless caught up)
        next.voters.push_back(learner);
        std::sort(next.voters.begin(), next.voters.end());
      }
    } else if (static_cast<int>(next.voters.size()) > voters_) {
      std::erase(next.voters, pick(next.voters));  // possibly the leader itself
    } else {
      std::vector<NodeId> outside;
      for (NodeId id : ids()) {
        if (!next.is_member(id)) outside.push_back(id);
      }
      if (outside.empty()) return;
      next.learners.push_back(pick(outside));
      std::sort(next.learners.begin(), next.learners.end());
    }
    if (world_.replica(l->id()).node->propose_conf(next)) {
      ++result_.conf_changes;
      event("propose " + to_string(next));
    }
    world_.process_ready(world_.replica(l->id()));
  }

  void compact() {
    const auto all = ids();
    const NodeId id = pick(all);
    Replica& r = world_.replica(id);
    if (!r.up() || r.sm.applied <= *r.disk.snapshot.index) return;
    world_.compact(id);
    world_.process_ready(r);
  }

  void transfer() {
    Node* l = world_.leader();
    if (!l) return;
    const NodeId to = pick(l->status().conf.voters);
    (void)l->transfer_leadership(to);
    world_.process_ready(world_.replica(l->id()));
  }

  // Heal everything, restart everyone, and require a commit on every voter within a bound.
  void liveness() {
    event("heal all, restart all");
    world_.heal();
    world_.set_faults({.latency_min = 1, .latency_max = faults_.latency_max});
    for (NodeId id : ids()) {
      world_.replica(id).torn_next_ready = false;
      if (!world_.replica(id).up()) world_.restart(id);
    }
    const Payload marker = Payload::copy_of("liveness-" + std::to_string(opts_.seed));
    uint64_t marker_index = 0, marker_term = 0;
    for (uint64_t t = 0; t < opts_.converge_units; ++t) {
      world_.step();
      if (!world_.checker().ok()) return;
      note_leader();
      if (trace_ && t % 50 == 0) print_nodes();
      const bool done = marker_index != 0 && committed(marker_index, marker);
      if (!done && t >= opts_.liveness_units) {
        return fail_liveness("no proposal committed", opts_.liveness_units);
      }
      Node* l = world_.leader();
      if (!l) continue;
      if (marker_index == 0 || (*l->term() != marker_term && !done)) {
        auto idx = world_.propose(l->id(), marker);
        if (idx) {
          marker_index = **idx;
          marker_term = *l->term();
        }
        continue;
      }
      if (!done) continue;
      if (result_.commit_units == 0) result_.commit_units = t + 1;
      bool all_applied = true;
      for (NodeId v : l->status().conf.voters) {
        const Replica& r = world_.replica(v);
        all_applied = all_applied && r.up() && r.sm.applied >= marker_index;
      }
      if (all_applied) {
        result_.converge_units = t + 1;
        return;
      }
    }
    fail_liveness("the voters did not all apply the committed proposal", opts_.converge_units);
  }

  void print_nodes() {
    for (const auto& [id, r] : world_.replicas()) {
      if (!r.up()) {
        event("  " + str(id) + " down");
        continue;
      }
      const NodeStatus st = r.node->status();
      event("  " + str(id) + " " + std::string(to_string(st.role)) + " term " +
            std::to_string(*st.term) + " last " + std::to_string(*st.last_index) + "/" +
            std::to_string(r.node->log().last_term()) + " commit " + std::to_string(*st.commit) +
            " " + to_string(st.conf));
    }
  }

  void fail_liveness(const std::string& what, uint64_t bound) {
    std::ostringstream out;
    out << "liveness: after healing, " << what << " within " << bound << " units (leader "
        << (world_.leader() ? std::to_string(*world_.leader()->id()) : "none") << ")";
    result_.failure = out.str();
  }

  bool committed(uint64_t index, const Payload& marker) {
    if (world_.checker().max_committed() < index) return false;
    const Entry e{LogIndex{index}, Term{0}, EntryType::kNormal, marker};
    return world_.checker().committed(index).second == entry_hash(e);
  }

  SimOptions opts_;
  bool trace_ = std::getenv("SLUICE_SIM_TRACE") != nullptr;
  Rng rng_;
  NetFaults faults_;
  bool async_ = false;    // WorldOptions::async_writes
  double intensity_ = 1;  // how often networks change and nodes crash (set before world_)
  World world_;
  int voters_ = 3;
  NodeId spare_;
  std::map<NodeId, uint64_t> down_until_;
  uint64_t next_payload_ = 0;
  uint64_t idle_until_ = 0;
  uint64_t last_leader_term_ = 0;
  SimResult result_;
};

}  // namespace

SimResult run_simulation(const SimOptions& options) { return Simulation(options).run(); }

uint64_t seed_from_env(uint64_t fallback) {
  const char* s = std::getenv("SLUICE_SEED");
  return s ? std::strtoull(s, nullptr, 10) : fallback;
}

uint64_t runs_from_env(uint64_t fallback) {
  if (const char* s = std::getenv("SLUICE_SIM_RUNS")) return std::strtoull(s, nullptr, 10);
  const char* l = std::getenv("SLUICE_LONG");
  return l && std::string(l) == "1" ? fallback * 10 : fallback;
}

}  // namespace sluice::raft::sim
