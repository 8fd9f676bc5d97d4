// The balancer's planning (plan_balance) and the move records (Reassign, CompleteReassignment,
// Decommission) on the metadata state machine: plans carried out to the end, as the partition
// leaders would, with the loads and move counts the issue asks for.
#include "cluster/balance.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <cstdlib>
#include <random>

#include "cluster/metadata.h"
#include "partitioner/placement.h"

namespace sluice::cluster {
namespace {

using kafka::ErrorCode;

class Cluster {
 public:
  void apply(const pb::Record& r) { last = state.apply(++index, r); }
  void add_broker(int32_t id, bool fenced = false) {
    pb::Record r;
    pb::Broker* b = r.mutable_register_broker()->mutable_broker();
    b->set_id(id);
    b->set_incarnation(1);
    apply(r);
    if (fenced) {
      pb::Record f;
      f.mutable_fence_broker()->set_id(id);
      f.mutable_fence_broker()->set_fenced(true);
      apply(f);
    }
  }
  void set_fenced(int32_t id, bool fenced) {
    pb::Record f;
    f.mutable_fence_broker()->set_id(id);
    f.mutable_fence_broker()->set_fenced(fenced);
    apply(f);
  }
  // A topic placed by partitioner::assign over brokers 0..n-1, as CreateTopics does.
  void create(const std::string& name, int partitions, int rf, int n) {
    std::vector<partitioner::Broker> brokers;
    for (int i = 0; i < n; ++i) brokers.push_back({BrokerId(i), "", 1});
    std::vector<partitioner::PartitionSpec> specs;
    for (int i = 0; i < partitions; ++i) specs.push_back({{name, PartitionId(i)}, rf});
    auto placed = partitioner::assign(brokers, specs, {});
    ASSERT_TRUE(placed.has_value());
    pb::Record r;
    pb::Topic* t = r.mutable_create_topic()->mutable_topic();
    t->set_name(name);
    t->set_replication_factor(rf);
    for (const auto& a : *placed) {
      pb::Partition* p = t->add_partitions();
      for (BrokerId b : a.replicas) p->add_replicas(*b);
    }
    apply(r);
  }
  void start(const BalancePlan& plan) {
    if (plan.moves.empty()) return;
    pb::Record r;
    for (const auto& m : plan.moves) {
      auto* ch = r.mutable_reassign()->add_changes();
      ch->set_topic(m.topic);
      ch->set_partition(m.partition);
      for (int32_t b : m.target) ch->add_target(b);
    }
    apply(r);
    ASSERT_TRUE(last.ok());
  }
  // What the partition leaders do: the group's voters become the target, then they report.
  void complete_all() {
    std::vector<pb::Record> done;
    for (const auto& [name, t] : state.image().topics()) {
      for (int i = 0; i < t.partitions_size(); ++i) {
        if (!moving(t.partitions(i))) continue;
        pb::Record r;
        r.mutable_complete_reassignment()->set_topic(name);
        r.mutable_complete_reassignment()->set_partition(i);
        for (int32_t b : target_replicas(t.partitions(i))) {
          r.mutable_complete_reassignment()->add_voters(b);
        }
        done.push_back(r);
      }
    }
    for (const auto& r : done) {
      apply(r);
      ASSERT_TRUE(last.ok()) << last.message;
    }
  }
  // Runs the balancer to the end; returns the replicas moved.
  size_t balance(size_t max_moves = 16) {
    size_t moved = 0;
    for (int round = 0; round < 10'000; ++round) {
      const BalancePlan plan = plan_balance(state.image(), {0.05, max_moves});
      EXPECT_LE(plan.moves.size(), max_moves);
      if (plan.moves.empty()) return moved;
      for (const auto& m : plan.moves) {
        const auto& p = state.image().topics().at(m.topic).partitions(m.partition);
        for (int32_t b : m.target) {
          moved += std::count(p.replicas().begin(), p.replicas().end(), b) == 0 ? 1 : 0;
        }
      }
      start(plan);
      complete_all();
    }
    ADD_FAILURE() << "the balancer never settles";
    return moved;
  }
  const pb::Partition& partition(const std::string& topic, int i) {
    return state.image().topics().at(topic).partitions(i);
  }

  MetadataState state;
  uint64_t index = 0;
  ApplyResult last;
};

std::vector<int32_t> ids(const google::protobuf::RepeatedField<int32_t>& f) {
  return {f.begin(), f.end()};
}

TEST(Balance, ABalancedClusterPlansNothing) {
  Cluster c;
  for (int i = 0; i < 3; ++i) c.add_broker(i);
  c.create("a", 50, 3, 3);
  c.create("b", 7, 1, 3);
  EXPECT_EQ(plan_balance(c.state.image(), {}).pending, 0u);
  EXPECT_FALSE(needs_balance(c.state.image()));
}

TEST(Balance, ABrokerJoiningTakesItsShareWithCloseToTheMinimumOfMoves) {
  Cluster c;
  for (int i = 0; i < 3; ++i) c.add_broker(i);
  c.create("load", 300, 3, 3);
  c.add_broker(3);
  EXPECT_TRUE(needs_balance(c.state.image()));
  EXPECT_FALSE(needs_balance(c.state.image(), /*underloaded=*/false));
  const size_t moved = c.balance();
  // The minimum: the new broker's share of 900 replicas is 225.
  EXPECT_GE(moved, 200u);
  EXPECT_LE(static_cast<double>(moved), 1.25 * 225);
  const auto loads = replica_loads(c.state.image());
  ASSERT_EQ(loads.size(), 4u);
  for (const auto& [id, n] : loads) EXPECT_LE(static_cast<double>(n), 1.10 * 225) << id;
  EXPECT_FALSE(needs_balance(c.state.image()));
  // Every partition still has three distinct replicas, none moving.
  for (int i = 0; i < 300; ++i) {
    auto r = ids(c.partition("load", i).replicas());
    std::sort(r.begin(), r.end());
    EXPECT_EQ(std::unique(r.begin(), r.end()), r.end());
    EXPECT_EQ(r.size(), 3u);
    EXPECT_FALSE(moving(c.partition("load", i)));
  }
}

TEST(Balance, DecommissionMovesEveryReplicaOff) {
  Cluster c;
  for (int i = 0; i < 4; ++i) c.add_broker(i);
  c.create("load", 120, 3, 4);
  pb::Record d;
  d.mutable_decommission()->set_id(2);
  d.mutable_decommission()->set_decommissioned(true);
  c.apply(d);
  ASSERT_TRUE(c.last.ok());
  EXPECT_TRUE(needs_balance(c.state.image(), false));
  c.balance(7);
  for (int i = 0; i < 120; ++i) {
    const auto r = ids(c.partition("load", i).replicas());
    EXPECT_EQ(std::count(r.begin(), r.end(), 2), 0) << i;
    EXPECT_EQ(r.size(), 3u);
  }
  EXPECT_FALSE(needs_balance(c.state.image()));
  // Recommissioned, it fills up again.
  d.mutable_decommission()->set_decommissioned(false);
  c.apply(d);
  EXPECT_TRUE(needs_balance(c.state.image()));
  EXPECT_GT(c.balance(), 0u);
  for (const auto& [id, n] : replica_loads(c.state.image())) EXPECT_GE(n, 80u) << id;
}

TEST(Balance, NeverShrinksAPartition) {
  Cluster c;
  for (int i = 0; i < 3; ++i) c.add_broker(i);
  c.create("t", 6, 3, 3);
  pb::Record d;
  d.mutable_decommission()->set_id(1);
  d.mutable_decommission()->set_decommissioned(true);
  c.apply(d);  // the controller refuses this; the planner must not make it worse
  const BalancePlan plan = plan_balance(c.state.image(), {0.05, 100});
  EXPECT_TRUE(plan.moves.empty());
}

TEST(Balance, MovesToAFencedBrokerWaitAndMovingPartitionsAreLeftAlone) {
  Cluster c;
  for (int i = 0; i < 3; ++i) c.add_broker(i);
  c.create("t", 40, 3, 3);
  c.add_broker(3, /*fenced=*/true);
  BalancePlan plan = plan_balance(c.state.image(), {0.05, 100});
  EXPECT_GT(plan.pending, 0u);
  EXPECT_TRUE(plan.moves.empty());
  c.set_fenced(3, false);
  plan = plan_balance(c.state.image(), {0.05, 4});
  ASSERT_EQ(plan.moves.size(), 4u);
  const size_t pending = plan.pending;
  c.start(plan);
  plan = plan_balance(c.state.image(), {0.05, 100});
  // Moving partitions count as placed at their target: neither pending nor started again.
  EXPECT_EQ(plan.pending, pending - 4);
  EXPECT_EQ(plan.moves.size(), pending - 4);
}

TEST(Reassign, RecordsTrackAddingAndRemovingAndComplete) {
  Cluster c;
  for (int i = 0; i < 5; ++i) c.add_broker(i);
  pb::Record t;
  pb::Topic* topic = t.mutable_create_topic()->mutable_topic();
  topic->set_name("t");
  for (int b : {0, 1, 2}) topic->add_partitions()->add_replicas(b);
  for (int b : {1, 2}) topic->mutable_partitions(0)->add_replicas(b);
  c.apply(t);
  pb::Record r;
  auto* ch = r.mutable_reassign()->add_changes();
  ch->set_topic("t");
  for (int b : {3, 1, 0}) ch->add_target(b);
  c.apply(r);
  const pb::Partition* p = &c.partition("t", 0);
  EXPECT_EQ(ids(p->replicas()), (std::vector<int32_t>{3, 1, 0, 2}));
  EXPECT_EQ(ids(p->adding()), (std::vector<int32_t>{3}));
  EXPECT_EQ(ids(p->removing()), (std::vector<int32_t>{2}));
  EXPECT_EQ(target_replicas(*p), (std::vector<int32_t>{3, 1, 0}));
  EXPECT_EQ(original_replicas(*p), (std::vector<int32_t>{1, 0, 2}));
  // A report whose voters are not the target is refused.
  pb::Record done;
  done.mutable_complete_reassignment()->set_topic("t");
  for (int b : {0, 1, 2}) done.mutable_complete_reassignment()->add_voters(b);
  c.apply(done);
  EXPECT_EQ(c.last.code, ErrorCode::kInvalidReplicaAssignment);
  // Replaced while running: the new target keeps every current replica until it completes.
  ch->clear_target();
  for (int b : {4, 1, 0}) ch->add_target(b);
  c.apply(r);
  p = &c.partition("t", 0);
  EXPECT_EQ(ids(p->replicas()), (std::vector<int32_t>{4, 1, 0, 3, 2}));
  EXPECT_EQ(ids(p->adding()), (std::vector<int32_t>{4, 3}));  // 3: added, now removed again
  EXPECT_EQ(ids(p->removing()), (std::vector<int32_t>{3, 2}));
  EXPECT_EQ(original_replicas(*p), (std::vector<int32_t>{1, 0, 2}));
  // Cancelled: back to the replicas the move started from; the added ones are removed.
  ch->clear_target();
  ch->set_cancel(true);
  c.apply(r);
  p = &c.partition("t", 0);
  EXPECT_EQ(target_replicas(*p), (std::vector<int32_t>{1, 0, 2}));
  EXPECT_EQ(ids(p->removing()), (std::vector<int32_t>{4, 3}));
  EXPECT_EQ(original_replicas(*p), (std::vector<int32_t>{1, 0, 2}));
  done.mutable_complete_reassignment()->clear_voters();
  for (int b : {2, 0, 1}) done.mutable_complete_reassignment()->add_voters(b);
  c.apply(done);
  ASSERT_TRUE(c.last.ok()) << c.last.message;
  p = &c.partition("t", 0);
  EXPECT_EQ(ids(p->replicas()), (std::vector<int32_t>{1, 0, 2}));
  EXPECT_FALSE(moving(*p));
  c.apply(done);
  EXPECT_EQ(c.last.code, ErrorCode::kNoReassignmentInProgress);
}

TEST(Reassign, OrderOnlyChangeIsNotAMoveAndPreferredElectionFlagClears) {
  Cluster c;
  for (int i = 0; i < 3; ++i) c.add_broker(i);
  c.create("t", 1, 3, 3);
  auto before = ids(c.partition("t", 0).replicas());
  std::vector<int32_t> rotated(before.begin() + 1, before.end());
  rotated.push_back(before[0]);
  pb::Record r;
  auto* ch = r.mutable_reassign()->add_changes();
  ch->set_topic("t");
  for (int32_t b : rotated) ch->add_target(b);
  c.apply(r);
  EXPECT_EQ(ids(c.partition("t", 0).replicas()), rotated);
  EXPECT_FALSE(moving(c.partition("t", 0)));
  pb::Record e;
  auto* target = e.mutable_elect_preferred()->add_partitions();
  target->set_topic("t");
  c.apply(e);
  EXPECT_TRUE(c.partition("t", 0).elect_preferred());
  pb::Record l;
  auto* lc = l.mutable_set_leaders()->add_changes();
  lc->set_topic("t");
  lc->set_leader(rotated[0]);
  lc->set_leader_epoch(3);
  c.apply(l);
  EXPECT_FALSE(c.partition("t", 0).elect_preferred());
}

// Seeded: the balancer's plans carried out by a model of the partition leaders (one membership
// change per step, as broker/reassign.cc does) while failures are injected: leaders lose their
// place (a new leader resumes from the group's configuration), completion reports arrive late
// or twice or with stale voters, moves are replaced or cancelled midway, brokers fence and come
// back, the controller's plan is recomputed from scratch at any point (a failover). Invariants:
// a partition's voters never drop below its factor of replicas that hold the log; every
// committed replica set has the factor and distinct brokers; the cluster ends balanced and
// with nothing moving. A failure prints the seed; SLUICE_SEED replays one.
TEST(BalanceSim, PlansCarriedOutWithFailuresInjected) {
  uint64_t first = 1, count = 40;
  if (const char* env = std::getenv("SLUICE_SEED")) {
    first = std::strtoull(env, nullptr, 10);
    count = 1;
  }
  for (uint64_t seed = first; seed < first + count; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed) + " (replay: SLUICE_SEED=" + std::to_string(seed) +
                 ")");
    std::mt19937_64 rng(seed);
    auto chance = [&rng](int percent) { return static_cast<int>(rng() % 100) < percent; };
    Cluster c;
    const int n = 3 + static_cast<int>(rng() % 3);
    for (int i = 0; i < n; ++i) c.add_broker(i);
    c.create("a", 10 + static_cast<int>(rng() % 30), 3, n);
    c.create("b", 5 + static_cast<int>(rng() % 10), std::min(2, n), n);
    // Each partition's Raft voters and learners (the group's configuration), as the model's
    // leaders change them; "holds the log" = voters plus caught-up learners.
    std::map<std::pair<std::string, int>, std::pair<std::vector<int32_t>, std::vector<int32_t>>> groups;
    for (const auto& [name, t] : c.state.image().topics()) {
      for (int i = 0; i < t.partitions_size(); ++i) groups[{name, i}] = {ids(t.partitions(i).replicas()), {}};
    }
    // The change: a broker joins, or one is decommissioned.
    if (chance(50) || n == 3) {  // the controller refuses to leave fewer brokers than replicas
      c.add_broker(n);
    } else {
      pb::Record d;
      d.mutable_decommission()->set_id(static_cast<int32_t>(rng() % n));
      d.mutable_decommission()->set_decommissioned(true);
      c.apply(d);
    }
    bool settled = false;
    for (int step = 0; step < 20'000 && !settled; ++step) {
      const int what = static_cast<int>(rng() % 100);
      if (what < 10) {
        // The controller (perhaps a new one) plans and starts moves.
        c.start(plan_balance(c.state.image(), {0.05, 1 + rng() % 8}));
        continue;
      }
      if (what < 12) {
        // A user cancels a running move (apply() replaces the image: iterate a held copy).
        const auto img = c.state.shared();
        for (const auto& [name, t] : img->topics()) {
          for (int i = 0; i < t.partitions_size(); ++i) {
            if (!moving(t.partitions(i)) || !chance(30)) continue;
            pb::Record r;
            auto* ch = r.mutable_reassign()->add_changes();
            ch->set_topic(name);
            ch->set_partition(i);
            ch->set_cancel(true);
            c.apply(r);
          }
        }
        continue;
      }
      if (what < 14) {
        const int32_t b = static_cast<int32_t>(rng() % (n + 1));
        if (c.state.image().brokers().count(b)) c.set_fenced(b, chance(50));
        continue;
      }
      // A partition leader takes one step (reassign.cc's order), or reports.
      std::vector<std::pair<std::string, int>> keys;
      for (const auto& [k, g] : groups) keys.push_back(k);
      const auto key = keys[rng() % keys.size()];
      auto& [voters, learners] = groups[key];
      const pb::Partition& p = c.partition(key.first, key.second);
      if (!moving(p)) continue;
      const std::vector<int32_t> target = target_replicas(p);
      auto in = [](const std::vector<int32_t>& v, int32_t x) {
        return std::find(v.begin(), v.end(), x) != v.end();
      };
      bool changed = false;
      for (size_t i = 0; i < learners.size() && !changed; ++i) {
        if (!in(target, learners[i])) {
          learners.erase(learners.begin() + static_cast<long>(i));
          changed = true;
        }
      }
      for (int32_t t : target) {
        if (changed) break;
        if (!in(voters, t) && !in(learners, t)) {
          learners.push_back(t);
          changed = true;
        }
      }
      if (!changed && !learners.empty()) {
        if (chance(60)) {  // caught up (a fenced learner never is)
          auto b = c.state.image().brokers().find(learners[0]);
          if (b != c.state.image().brokers().end() && !b->second.fenced()) {
            voters.push_back(learners[0]);
            learners.erase(learners.begin());
          }
        }
        changed = true;
      }
      for (size_t i = 0; i < voters.size() && !changed; ++i) {
        if (!in(target, voters[i])) {
          voters.erase(voters.begin() + static_cast<long>(i));
          changed = true;
        }
      }
      ASSERT_GE(voters.size(), std::min(target.size(), original_replicas(p).size()))
          << key.first << "-" << key.second << ": fewer voters than replicas";
      if (changed) continue;
      // Report: sometimes with stale voters (a report from before the target changed).
      pb::Record done;
      done.mutable_complete_reassignment()->set_topic(key.first);
      done.mutable_complete_reassignment()->set_partition(key.second);
      std::vector<int32_t> said = voters;
      if (chance(10) && !said.empty()) said.pop_back();
      for (int32_t v : said) done.mutable_complete_reassignment()->add_voters(v);
      c.apply(done);
      if (said != voters) {
        EXPECT_FALSE(c.last.ok());
      }
      if (c.last.ok() && chance(20)) c.apply(done);  // delivered twice: refused, harmless
      // Settled once nothing moves and the balancer has nothing left.
      bool any = false;
      for (const auto& [name, t] : c.state.image().topics()) {
        for (const auto& q : t.partitions()) any = any || moving(q);
      }
      if (!any) {
        for (int32_t b = 0; b <= n; ++b) {
          if (c.state.image().brokers().count(b)) c.set_fenced(b, false);
        }
        settled = plan_balance(c.state.image(), {0.05, 100}).pending == 0;
      }
    }
    ASSERT_TRUE(settled) << "never settled";
    for (const auto& [name, t] : c.state.image().topics()) {
      for (int i = 0; i < t.partitions_size(); ++i) {
        auto r = ids(t.partitions(i).replicas());
        std::vector<int32_t> sorted_r = r, group = groups[{name, i}].first;
        std::sort(sorted_r.begin(), sorted_r.end());
        std::sort(group.begin(), group.end());
        EXPECT_EQ(sorted_r, group) << name << "-" << i << ": metadata and group disagree";
        EXPECT_EQ(std::unique(sorted_r.begin(), sorted_r.end()), sorted_r.end());
        EXPECT_EQ(r.size(), name == "a" ? 3u : static_cast<size_t>(std::min(2, n)));
        for (int32_t b : r) {
          EXPECT_FALSE(c.state.image().brokers().at(b).decommissioned()) << name << "-" << i;
        }
      }
    }
    if (testing::Test::HasFailure()) return;
  }
}

}  // namespace
}  // namespace sluice::cluster
