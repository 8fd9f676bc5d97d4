// Proposals committed per second through an in-memory Raft cluster (simulated disks and
// network in one thread, checker off), next to baselines measured in the same run:
//   BM_VectorAppendBaseline  appending the same entries to a std::vector (the floor)
//   BM_RaftCommit/voters:1   a one-node group (no replication)
//   BM_RaftCommit/voters:3   a three-node group; the leader batches all proposals made
//                            between two Readies into one append per follower
// Each Raft row prints ns_per_proposal and its ratio to the baselines measured in the same
// run: x_vector (to the vector append) and x_1node (to the one-node row of the same batch).
#include <benchmark/benchmark.h>
#include <time.h>

#include <map>

#include "replication/sim/world.h"

namespace sluice::raft {
namespace {

constexpr size_t kPayloadBytes = 100;

// Registered first, so the Raft rows can print their cost relative to it.
double g_vector_ns = 0;
std::map<int, double> g_one_node_ns;  // BM_RaftCommit/voters:1 by batch size

// Thread CPU time around a benchmark loop, for the ratios (Google Benchmark does not hand
// its own timings to the benchmark function).
class CpuTimer {
 public:
  CpuTimer() : start_(now()) {}
  double ns_per_item(const benchmark::State& state, int batch) const {
    return (now() - start_) / static_cast<double>(state.iterations() * batch);
  }

 private:
  static double now() {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
  }
  double start_;
};

Payload payload() { return Payload::adopt(std::vector<std::byte>(kPayloadBytes, std::byte{7})); }

void BM_VectorAppendBaseline(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  const Payload p = payload();
  std::vector<Entry> log;
  uint64_t index = 0;
  const CpuTimer timer;
  for (auto _ : state) {
    for (int i = 0; i < batch; ++i) {
      log.push_back(Entry{LogIndex{++index}, Term{1}, EntryType::kNormal, p});
    }
    benchmark::DoNotOptimize(log.data());
    if (log.size() > (1u << 16)) log.clear();
  }
  state.SetItemsProcessed(state.iterations() * batch);
  g_vector_ns = timer.ns_per_item(state, batch);
  state.counters["ns_per_proposal"] =
      benchmark::Counter(static_cast<double>(state.iterations() * batch),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_VectorAppendBaseline)->ArgName("batch")->Arg(64);

void BM_RaftCommit(benchmark::State& state) {
  const int voters = static_cast<int>(state.range(0));
  const int batch = static_cast<int>(state.range(1));
  sim::World w({.seed = 1,
                .manual = true,
                .node_config = {.max_inflight_msgs = 256,
                                .max_msg_bytes = 1 << 20,
                                .max_uncommitted_bytes = 1 << 30},
                .check = false});
  w.bootstrap(voters);
  const NodeId leader_id{1};
  w.node(leader_id)->campaign();
  w.process_ready(w.replica(leader_id));
  w.stabilize();
  Node& leader = *w.node(leader_id);
  const Payload p = payload();
  uint64_t rounds = 0;
  const CpuTimer timer;
  for (auto _ : state) {
    LogIndex last;
    for (int i = 0; i < batch; ++i) last = *leader.propose(p);
    w.process_ready(w.replica(leader_id));
    w.stabilize();
    if (leader.status().commit < last) state.SkipWithError("proposals did not commit");
    if (++rounds % 256 == 0) {
      for (int id = 1; id <= voters; ++id) (void)w.compact(NodeId{id});  // bound memory
    }
  }
  state.SetItemsProcessed(state.iterations() * batch);
  const double ns = timer.ns_per_item(state, batch);
  if (voters == 1) g_one_node_ns[batch] = ns;
  if (g_vector_ns > 0) state.counters["x_vector"] = ns / g_vector_ns;
  if (voters > 1 && g_one_node_ns.contains(batch)) {
    state.counters["x_1node"] = ns / g_one_node_ns[batch];
  }
  state.SetBytesProcessed(state.iterations() * batch * static_cast<int64_t>(kPayloadBytes));
  state.counters["ns_per_proposal"] =
      benchmark::Counter(static_cast<double>(state.iterations() * batch),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_RaftCommit)
    ->ArgNames({"voters", "batch"})
    ->Args({1, 1})
    ->Args({1, 64})
    ->Args({1, 512})
    ->Args({3, 1})
    ->Args({3, 64})
    ->Args({3, 512})
    ->Args({5, 64});

}  // namespace
}  // namespace sluice::raft
