// The randomized Raft simulation: one seed decides the cluster (3 or 5 voters plus a spare
// node for membership changes), the network faults, crashes (some in the middle of a write),
// partitions (symmetric and asymmetric), membership changes, leadership transfers,
// compactions and the proposal load. The checker runs after every event (see world.h);
// after the chaos phase the network heals, every node restarts, and a proposal must commit
// within a bound (liveness) and then reach every voter (convergence).
#pragma once

#include <cstdint>
#include <string>

namespace sluice::raft::sim {

struct SimOptions {
  uint64_t seed = 1;
  uint64_t chaos_units = 6000;      // simulated time units of faults (a node ticks every 10)
  uint64_t liveness_units = 3000;   // after healing: bound to elect a leader and commit
  uint64_t converge_units = 20000;  // and for every voter to apply it (slow catch-up with a
                                    // window of 1 and tiny appends takes a while)
};

struct SimResult {
  bool ok = true;
  std::string failure;  // empty when ok
  uint64_t trace_hash = 0;
  uint64_t committed = 0;  // highest committed index
  uint64_t elections = 0;  // distinct leader terms seen
  uint64_t crashes = 0;
  uint64_t conf_changes = 0;
  uint64_t snapshots_sent = 0;  // InstallSnapshot messages delivered
  uint64_t transfers = 0;       // TimeoutNow messages delivered
  uint64_t quiesces = 0;        // quiesce heartbeats delivered
  uint64_t async_writes = 0;    // leader Readies written after their advance()
  uint64_t source_reads = 0;    // LogSource reads (runs with a source; replicas up at the end)
  uint64_t deferred_reads = 0;  // of those, answered later (WorldOptions::source_deferred)
  uint64_t commit_units = 0;    // time from healing until a new proposal committed
  uint64_t converge_units = 0;  // and until every voter applied it
};

SimResult run_simulation(const SimOptions& options);

// The seed for a test: SLUICE_SEED if set, else `fallback`.
uint64_t seed_from_env(uint64_t fallback);
// How many simulations a test runs: SLUICE_SIM_RUNS if set, else `fallback` (x10 with
// SLUICE_LONG=1).
uint64_t runs_from_env(uint64_t fallback);

}  // namespace sluice::raft::sim
