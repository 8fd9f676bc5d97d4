// The randomized simulation as ctest entries: several shards of seeded runs (label `sim`),
// a replay entry for one seed, and a determinism check.
#include <gtest/gtest.h>

#include <unistd.h>
#include <csignal>
#include <cstdio>
#include <cstring>

#include "replication/sim/random_sim.h"

namespace sluice::raft::sim {
namespace {

constexpr uint64_t kShards = 8;
constexpr uint64_t kRunsPerShard = 250;  // 2,000 simulations in the default run

std::string replay_command(uint64_t seed) {
  return "SLUICE_SEED=" + std::to_string(seed) +
         " build/release/replication/raft_sim_test --gtest_filter=RaftSim.Replay";
}

// A run that dies (SLUICE_ASSERT, a sanitizer, a crash) still names its seed: the replay
// line is formatted before each run and written by a signal handler on SIGABRT/SIGSEGV.
char g_replay_line[256];

void on_fatal_signal(int sig) {
  const char prefix[] = "\n*** raft simulation died; replay with:\n  ";
  (void)!write(STDERR_FILENO, prefix, sizeof(prefix) - 1);
  (void)!write(STDERR_FILENO, g_replay_line, strlen(g_replay_line));
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

void arm_replay_line(uint64_t seed) {
  static const bool installed = [] {
    std::signal(SIGABRT, on_fatal_signal);
    std::signal(SIGSEGV, on_fatal_signal);
    return true;
  }();
  (void)installed;
  std::snprintf(g_replay_line, sizeof(g_replay_line), "%s\n", replay_command(seed).c_str());
}

void run_one(uint64_t seed, uint64_t* recovery_units, uint64_t* quiesces, uint64_t* async) {
  arm_replay_line(seed);
  const SimResult r = run_simulation({.seed = seed});
  *recovery_units = r.commit_units;
  *quiesces += r.quiesces;
  *async += r.async_writes;
  ASSERT_TRUE(r.ok) << r.failure << "\nseed " << seed << "; replay with:\n  "
                    << replay_command(seed);
}

class RaftSimShard : public testing::TestWithParam<uint64_t> {};

TEST_P(RaftSimShard, SeededRunsKeepSafetyAndLiveness) {
  const uint64_t runs = runs_from_env(kRunsPerShard);
  const uint64_t base = seed_from_env(1) * 1'000'003ULL;  // a different SLUICE_SEED shifts all
  uint64_t slowest = 0, slowest_seed = 0, quiesces = 0, async = 0;
  for (uint64_t i = 0; i < runs; ++i) {
    const uint64_t seed = base + GetParam() * runs + i;
    uint64_t units = 0;
    run_one(seed, &units, &quiesces, &async);
    if (HasFatalFailure()) return;
    if (units > slowest) std::tie(slowest, slowest_seed) = std::pair(units, seed);
  }
  std::printf("%llu runs; slowest commit after healing: %llu units (seed %llu); %llu quiesce "
              "heartbeats delivered; %llu leader Readies written asynchronously\n",
              (unsigned long long)runs, (unsigned long long)slowest,
              (unsigned long long)slowest_seed, (unsigned long long)quiesces,
              (unsigned long long)async);
  // Half the runs let groups quiesce, and every run has idle spells: it must happen. Half
  // write a leader's appends asynchronously.
  if (runs >= 20) {
    EXPECT_GT(quiesces, 0u);
    EXPECT_GT(async, 0u);
  }
}

INSTANTIATE_TEST_SUITE_P(Shards, RaftSimShard, testing::Range<uint64_t>(0, kShards));

// Replays one seed: SLUICE_SEED=<seed> raft_sim_test --gtest_filter=RaftSim.Replay
TEST(RaftSim, Replay) {
  const uint64_t seed = seed_from_env(42);
  arm_replay_line(seed);
  const SimResult r = run_simulation({.seed = seed});
  std::printf(
      "seed %llu: committed %llu, leader terms %llu, crashes %llu, conf changes %llu, "
      "trace %016llx\n",
      (unsigned long long)seed, (unsigned long long)r.committed, (unsigned long long)r.elections,
      (unsigned long long)r.crashes, (unsigned long long)r.conf_changes,
      (unsigned long long)r.trace_hash);
  EXPECT_TRUE(r.ok) << r.failure << "\n" << replay_command(seed);
}

TEST(RaftSim, SameSeedSameTrace) {
  for (uint64_t seed : {3ULL, 77ULL, 1234ULL}) {
    const SimResult a = run_simulation({.seed = seed});
    const SimResult b = run_simulation({.seed = seed});
    EXPECT_EQ(a.trace_hash, b.trace_hash) << "seed " << seed;
    EXPECT_EQ(a.committed, b.committed) << "seed " << seed;
  }
  EXPECT_NE(run_simulation({.seed = 5}).trace_hash, run_simulation({.seed = 6}).trace_hash);
}

TEST(RaftSim, SimulationsMakeProgressUnderFaults) {
  // Guards against a simulator that passes by doing nothing.
  uint64_t committed = 0, elections = 0, crashes = 0, conf = 0, snaps = 0, transfers = 0,
           reads = 0, deferred = 0;
  for (uint64_t seed = 100; seed < 120; ++seed) {
    const SimResult r = run_simulation({.seed = seed});
    ASSERT_TRUE(r.ok) << r.failure << "\n" << replay_command(seed);
    committed += r.committed;
    elections += r.elections;
    crashes += r.crashes;
    conf += r.conf_changes;
    snaps += r.snapshots_sent;
    transfers += r.transfers;
    reads += r.source_reads;
    deferred += r.deferred_reads;
  }
  std::printf(
      "20 runs: committed %llu, leader terms %llu, crashes %llu, conf changes %llu, "
      "snapshots %llu, transfers %llu, source reads %llu (%llu deferred)\n",
      (unsigned long long)committed, (unsigned long long)elections, (unsigned long long)crashes,
      (unsigned long long)conf, (unsigned long long)snaps, (unsigned long long)transfers,
      (unsigned long long)reads, (unsigned long long)deferred);
  EXPECT_GT(snaps, 0u);
  EXPECT_GT(transfers, 0u);
  EXPECT_GT(reads, 20u);  // half the runs read old entries back through a LogSource
  EXPECT_GT(deferred, 0u);  // a quarter of them as a shard does (Node::source_ready)
  EXPECT_GT(committed, 20u * 50);
  EXPECT_GT(elections, 20u * 2);
  EXPECT_GT(crashes, 20u);
  EXPECT_GT(conf, 20u);
}

}  // namespace
}  // namespace sluice::raft::sim
