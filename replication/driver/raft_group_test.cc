// The driver under a deterministic harness: three RaftGroups on real files (FileRaftStorage in
// a temporary directory), a seeded network that drops, duplicates and reorders, and crashes
// that destroy a group and rebuild it from its files. Checks: the applied sequences of all
// replicas are prefixes of one another, and every proposal that was applied anywhere is applied
// everywhere after healing. A failure prints its seed; SLUICE_SEED=S replays it.
#include "replication/driver/raft_group.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <deque>
#include <filesystem>
#include <map>
#include <random>

namespace sluice::raft {
namespace {

struct Replica {
  std::unique_ptr<FileRaftStorage> storage;
  std::unique_ptr<RaftGroup> group;
  std::vector<std::string> applied;  // rebuilt from the start on each restart
};

class Harness {
 public:
  Harness(uint64_t seed, std::string dir) : rng_(seed), dir_(std::move(dir)) {
    for (int i = 1; i <= 3; ++i) start(i);
  }

  void start(int id) {
    Replica& r = replicas_[id];
    r.applied.clear();
    r.storage = std::make_unique<FileRaftStorage>(dir_ + "/n" + std::to_string(id));
    Config c;
    c.id = NodeId(id);
    c.seed = rng_();
    c.election_ticks = 10;
    GroupCallbacks cb;
    cb.send = [this](const Message& m) { net_.push_back(m); };
    cb.apply = [this, id](const Entry& e) { replicas_[id].applied.push_back(std::string(e.data.text())); };
    r.group = std::make_unique<RaftGroup>(0, c, *r.storage, cb);
    ConfState initial{{NodeId(1), NodeId(2), NodeId(3)}, {}};
    auto s = r.group->start(initial);
    ASSERT_TRUE(s) << s.error().message;
  }

  void crash(int id) {
    replicas_[id].group.reset();
    replicas_[id].storage.reset();
  }

  // One step of the world: deliver some messages (maybe dropping, duplicating, reordering),
  // tick everyone now and then, propose at whoever leads.
  void step(bool faults) {
    // Deliver a few messages per step: more than the ticks and proposals make, so the network
    // keeps up and healing means catching up.
    for (int k = 0; k < 4 && !net_.empty(); ++k) deliver(faults);
    tick_and_propose(faults);
  }

  void deliver(bool faults) {
    {
      size_t pick = faults && net_.size() > 1 ? rng_() % std::min<size_t>(net_.size(), 4) : 0;
      Message m = net_[pick];
      net_.erase(net_.begin() + static_cast<long>(pick));
      const bool drop = faults && rng_() % 10 == 0;
      if (faults && rng_() % 20 == 0) net_.push_back(m);  // duplicate
      auto& to = replicas_[*m.to];
      if (!drop && to.group) to.group->step(m);
    }
  }

  void tick_and_propose(bool faults) {
    if (++clock_ % 4 == 0) {
      for (auto& [id, r] : replicas_) {
        if (r.group) r.group->tick();
      }
    }
    if (clock_ % 7 == 0) {
      for (auto& [id, r] : replicas_) {
        if (r.group && r.group->is_leader()) {
          const std::string v = "v" + std::to_string(next_value_);
          if (r.group->propose(Payload::copy_of(v))) ++next_value_;
          r.group->process();
        }
      }
    }
    if (faults && rng_() % 300 == 0) {
      const int id = 1 + static_cast<int>(rng_() % 3);
      if (replicas_[id].group) {
        crash(id);
      }
    }
    for (auto& [id, r] : replicas_) {
      if (!r.group && (!faults || rng_() % 50 == 0)) start(id);
    }
  }

  void check_prefixes() const {
    const std::vector<std::string>* longest = nullptr;
    for (const auto& [id, r] : replicas_) {
      if (!longest || r.applied.size() > longest->size()) longest = &r.applied;
    }
    for (const auto& [id, r] : replicas_) {
      for (size_t i = 0; i < r.applied.size(); ++i) {
        ASSERT_EQ(r.applied[i], (*longest)[i]) << "replica " << id << " diverges at " << i;
      }
    }
  }

  size_t min_applied() const {
    size_t m = SIZE_MAX;
    for (const auto& [id, r] : replicas_) m = std::min(m, r.applied.size());
    return m;
  }
  size_t max_applied() const {
    size_t m = 0;
    for (const auto& [id, r] : replicas_) m = std::max(m, r.applied.size());
    return m;
  }

 private:
  std::mt19937_64 rng_;
  std::string dir_;
  std::map<int, Replica> replicas_;
  std::deque<Message> net_;
  uint64_t clock_ = 0;
  uint64_t next_value_ = 0;
};

uint64_t base_seed() {
  const char* s = std::getenv("SLUICE_SEED");
  return s ? std::strtoull(s, nullptr, 10) : 424242;
}

TEST(RaftGroup, FaultsThenHealingConverges) {
  // Real files and fsyncs make a run take seconds: a few seeds per test run, many with --long.
  const int runs = std::getenv("SLUICE_SEED") ? 1 : (std::getenv("SLUICE_LONG") ? 60 : 3);
  for (int run = 0; run < runs; ++run) {
    const uint64_t seed = base_seed() + static_cast<uint64_t>(run);
    char tmpl[] = "/tmp/raft-group-XXXXXX";
    const std::string dir = ::mkdtemp(tmpl);
    {
      Harness h(seed, dir);
      for (int i = 0; i < 2500; ++i) {
        h.step(true);
        h.check_prefixes();
        if (::testing::Test::HasFatalFailure()) break;
      }
      for (int i = 0; i < 4000 && !::testing::Test::HasFatalFailure(); ++i) h.step(false);
      h.check_prefixes();
      const size_t before = h.max_applied();
      for (int i = 0; i < 2000 && !::testing::Test::HasFatalFailure(); ++i) h.step(false);
      EXPECT_GT(h.max_applied(), before) << "no progress after healing";
      EXPECT_GE(h.min_applied() + 20, h.max_applied()) << "a replica stays behind";
    }
    std::filesystem::remove_all(dir);
    if (::testing::Test::HasFailure()) {
      ADD_FAILURE() << "replay: SLUICE_SEED=" << seed
                    << " raft_driver_test --gtest_filter=RaftGroup.*";
      return;
    }
  }
}

TEST(RaftGroup, RestartRestoresSnapshotAndReappliesLaterEntries) {
  char tmpl[] = "/tmp/raft-group-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  std::vector<std::string> applied;
  std::string restored;
  auto make = [&](FileRaftStorage& st) {
    Config c;
    c.id = NodeId(1);
    GroupCallbacks cb;
    cb.send = [](const Message&) {};
    cb.apply = [&](const Entry& e) { applied.push_back(std::string(e.data.text())); };
    cb.restore = [&](const Snapshot& snap) -> Status {
      restored = std::string(snap.data.text());
      return {};
    };
    return std::make_unique<RaftGroup>(0, c, st, cb);
  };
  {
    FileRaftStorage st(dir);
    auto g = make(st);
    ASSERT_TRUE(g->start(ConfState{{NodeId(1)}, {}}));
    g->campaign();
    ASSERT_TRUE(g->is_leader());
    for (int i = 0; i < 5; ++i) {
      ASSERT_TRUE(g->propose(Payload::copy_of("r" + std::to_string(i))));
      g->process();
    }
    ASSERT_EQ(applied.size(), 5u);
    ASSERT_TRUE(g->maybe_compact(1, [] { return Payload::copy_of(std::string("img5")); }));
    for (int i = 5; i < 7; ++i) {
      ASSERT_TRUE(g->propose(Payload::copy_of("r" + std::to_string(i))));
      g->process();
    }
    ASSERT_EQ(applied.size(), 7u);
  }
  applied.clear();
  FileRaftStorage st(dir);
  auto g = make(st);
  ASSERT_TRUE(g->start(ConfState{{NodeId(1)}, {}}));
  EXPECT_EQ(restored, "img5");
  g->campaign();
  for (int i = 0; i < 30 && applied.size() < 2; ++i) g->tick();
  EXPECT_TRUE(g->is_leader());
  EXPECT_EQ(applied, (std::vector<std::string>{"r5", "r6"}));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace sluice::raft
