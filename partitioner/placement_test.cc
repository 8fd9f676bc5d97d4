#include "partitioner/placement.h"

#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "partitioner/internal/test_clusters.h"

namespace sluice::partitioner {
namespace {

using detail::plain_brokers;
using detail::replicas_moved;
using detail::topic_partitions;

Assignment must_assign(const std::vector<Broker>& brokers,
                       const std::vector<PartitionSpec>& partitions,
                       const Assignment* current = nullptr, Options options = {}) {
  auto result = assign(brokers, partitions, options, current);
  EXPECT_TRUE(result.has_value()) << (result ? "" : result.error().message);
  return result ? *result : Assignment{};
}

int error_code(const Result<Assignment>& r) { return r ? 0 : r.error().code; }

TEST(Placement, RejectsBadInput) {
  const auto parts = topic_partitions(1, 4, 3);
  const auto brokers = plain_brokers(1, 3);
  EXPECT_EQ(error_code(assign({}, parts, {})), int(PlacementErrc::kNoBrokers));
  auto dup = brokers;
  dup.push_back(brokers[0]);
  EXPECT_EQ(error_code(assign(dup, parts, {})), int(PlacementErrc::kDuplicateBroker));
  auto heavy = brokers;
  heavy[1].weight = 0;
  EXPECT_EQ(error_code(assign(heavy, parts, {})), int(PlacementErrc::kBadWeight));
  heavy[1].weight = kWeightMax + 1;
  EXPECT_EQ(error_code(assign(heavy, parts, {})), int(PlacementErrc::kBadWeight));
  EXPECT_EQ(error_code(assign(brokers, topic_partitions(1, 4, 4), {})),
            int(PlacementErrc::kBadReplicationFactor));
  EXPECT_EQ(error_code(assign(brokers, topic_partitions(1, 4, 0), {})),
            int(PlacementErrc::kBadReplicationFactor));
  auto twice = parts;
  twice.push_back(parts[2]);
  EXPECT_EQ(error_code(assign(brokers, twice, {})), int(PlacementErrc::kDuplicatePartition));
  EXPECT_EQ(error_code(assign(brokers, parts, {.epsilon = -0.1})), int(PlacementErrc::kBadEpsilon));
  EXPECT_EQ(error_code(assign(brokers, parts, {.epsilon = NAN})), int(PlacementErrc::kBadEpsilon));
  Assignment current = must_assign(brokers, parts);
  current.push_back(current[0]);
  EXPECT_EQ(error_code(assign(brokers, parts, {}, &current)),
            int(PlacementErrc::kDuplicatePartition));
}

TEST(Placement, EmptyPartitionListGivesEmptyAssignment) {
  EXPECT_TRUE(must_assign(plain_brokers(1, 3), {}).empty());
}

TEST(Placement, ThreeBrokersAtRf3HoldEverythingAndLeadAThirdEach) {
  const auto brokers = plain_brokers(1, 3);
  const Assignment a = must_assign(brokers, topic_partitions(2, 30, 3));
  ASSERT_EQ(a.size(), 60U);
  const Loads l = loads(brokers, a);
  for (size_t b = 0; b < 3; ++b) {
    EXPECT_EQ(l.replicas[b], 60U);
    EXPECT_EQ(l.leaders[b], 20U);
  }
}

TEST(Placement, OutputIsSortedByTopicPartition) {
  auto parts = topic_partitions(3, 7, 2);
  std::reverse(parts.begin(), parts.end());
  const Assignment a = must_assign(plain_brokers(10, 5), parts);
  for (size_t i = 1; i < a.size(); ++i) EXPECT_LT(a[i - 1].tp, a[i].tp);
}

TEST(Placement, ReplicasOnDistinctRacksWhenThereAreEnough) {
  std::vector<Broker> brokers;
  for (int32_t i = 0; i < 9; ++i) {
    brokers.push_back({.id = BrokerId(i), .rack = "rack-" + std::to_string(i % 3)});
  }
  const Assignment a = must_assign(brokers, topic_partitions(4, 50, 3));
  for (const PartitionAssignment& p : a) {
    std::set<std::string> racks;
    for (const BrokerId id : p.replicas) racks.insert(brokers[*id].rack);
    EXPECT_EQ(racks.size(), 3U) << p.tp.topic << "-" << *p.tp.partition;
  }
}

// With two racks and RF 3, no rack holds more than two replicas of a partition.
TEST(Placement, RacksAreSpreadWhenFewerThanReplicationFactor) {
  std::vector<Broker> brokers;
  for (int32_t i = 0; i < 8; ++i) {
    brokers.push_back({.id = BrokerId(i), .rack = i % 2 == 0 ? "a" : "b"});
  }
  const Assignment a = must_assign(brokers, topic_partitions(2, 40, 3));
  for (const PartitionAssignment& p : a) {
    int in_a = 0;
    for (const BrokerId id : p.replicas) in_a += brokers[*id].rack == "a" ? 1 : 0;
    EXPECT_TRUE(in_a == 1 || in_a == 2);
  }
}

TEST(Placement, SameInputAgainMovesNothing) {
  const auto brokers = plain_brokers(1, 7);
  const auto parts = topic_partitions(5, 40, 3);
  const Assignment a = must_assign(brokers, parts);
  EXPECT_EQ(must_assign(brokers, parts, &a), a);
}

TEST(Placement, AddingABrokerMovesItsShareAndOnlyToIt) {
  const auto parts = topic_partitions(10, 100, 3);
  const Assignment before = must_assign(plain_brokers(1, 9), parts);
  const Assignment after = must_assign(plain_brokers(1, 10), parts, &before);
  const Plan p = plan(before, after);
  EXPECT_EQ(p.moves.size(), 300U);  // 3000 replicas / 10 brokers
  for (const Move& m : p.moves) {
    ASSERT_TRUE(m.to.has_value() && m.from.has_value());
    EXPECT_EQ(*m.to, BrokerId(10));
  }
}

TEST(Placement, RemovingABrokerMovesOnlyItsReplicas) {
  const auto parts = topic_partitions(10, 100, 3);
  const Assignment before = must_assign(plain_brokers(1, 10), parts);
  const Assignment after = must_assign(plain_brokers(1, 9), parts, &before);
  const Plan p = plan(before, after);
  EXPECT_EQ(p.moves.size(), loads(plain_brokers(10, 1), before).replicas[0]);
  for (const Move& m : p.moves) EXPECT_EQ(*m.from, BrokerId(10));
}

TEST(Placement, WeightsGiveProportionalShares) {
  auto brokers = plain_brokers(1, 4);
  brokers[0].weight = 3;  // weights 3,1,1,1: shares 1/2, 1/6, 1/6, 1/6 of 1200 replicas
  const Assignment a = must_assign(brokers, topic_partitions(1, 600, 2));
  const Loads l = loads(brokers, a);
  EXPECT_NEAR(double(l.replicas[0]), 600, 600 * 0.05 + 1);
  for (size_t b = 1; b < 4; ++b) EXPECT_NEAR(double(l.replicas[b]), 200, 200 * 0.05 + 1);
  EXPECT_NEAR(double(l.leaders[0]), 300, 1);
  for (size_t b = 1; b < 4; ++b) EXPECT_NEAR(double(l.leaders[b]), 100, 1);
}

// A broker too heavy for its share (it can hold at most one replica per partition) is pinned
// at "every partition", and the rest is shared among the others.
TEST(Placement, OverweightBrokerHoldsEveryPartitionOnce) {
  auto brokers = plain_brokers(1, 5);
  brokers[2].weight = 1000;
  const Assignment a = must_assign(brokers, topic_partitions(1, 100, 3));
  const Loads l = loads(brokers, a);
  EXPECT_EQ(l.replicas[2], 100U);
  for (const size_t b : {0, 1, 3, 4}) EXPECT_NEAR(double(l.replicas[b]), 50, 3);
}

TEST(Placement, ReplicationFactorChangeKeepsExistingReplicas) {
  const auto brokers = plain_brokers(1, 6);
  const Assignment rf2 = must_assign(brokers, topic_partitions(1, 60, 2));
  const Assignment rf3 = must_assign(brokers, topic_partitions(1, 60, 3), &rf2);
  for (size_t i = 0; i < rf2.size(); ++i) {
    for (const BrokerId id : rf2[i].replicas) {
      EXPECT_NE(std::find(rf3[i].replicas.begin(), rf3[i].replicas.end(), id),
                rf3[i].replicas.end());
    }
  }
  const Plan grow = plan(rf2, rf3);
  EXPECT_EQ(grow.moves.size(), 60U);
  for (const Move& m : grow.moves) EXPECT_FALSE(m.from.has_value());
}

// A current assignment may name brokers that are gone, name one broker twice, or carry more
// replicas than the replication factor: what is valid is kept, the rest is placed anew.
TEST(Placement, MalformedCurrentAssignmentIsRepaired) {
  const auto brokers = plain_brokers(1, 5);
  const auto parts = topic_partitions(1, 3, 3);
  const Assignment current = {
      {parts[0].tp, {BrokerId(2), BrokerId(99), BrokerId(3)}},             // 99 is gone
      {parts[1].tp, {BrokerId(4), BrokerId(4), BrokerId(1)}},              // 4 twice
      {parts[2].tp, {BrokerId(5), BrokerId(1), BrokerId(2), BrokerId(3)}}  // one too many
  };
  const Assignment a = must_assign(brokers, parts, &current);
  ASSERT_EQ(a.size(), 3U);
  for (const PartitionAssignment& p : a) {
    EXPECT_EQ(std::set<BrokerId>(p.replicas.begin(), p.replicas.end()).size(), 3U);
  }
  const auto has = [](const PartitionAssignment& p, int32_t id) {
    return std::find(p.replicas.begin(), p.replicas.end(), BrokerId(id)) != p.replicas.end();
  };
  EXPECT_TRUE(has(a[0], 2) && has(a[0], 3));
  EXPECT_TRUE(has(a[1], 4) && has(a[1], 1));
  EXPECT_TRUE(has(a[2], 5) && has(a[2], 1) && has(a[2], 2));  // the tail is dropped
}

TEST(Placement, PlanListsMovesAndLeaderChanges) {
  const TopicPartition a{.topic = "a", .partition = PartitionId(0)};
  const TopicPartition b{.topic = "b", .partition = PartitionId(0)};
  const TopicPartition c{.topic = "c", .partition = PartitionId(0)};
  const Assignment from = {{a, {BrokerId(1), BrokerId(2), BrokerId(3)}},
                           {b, {BrokerId(1), BrokerId(2)}}};
  const Assignment to = {{a, {BrokerId(2), BrokerId(4), BrokerId(1)}},
                         {b, {BrokerId(1), BrokerId(2), BrokerId(5)}},
                         {c, {BrokerId(9)}}};
  const Plan p = plan(from, to);
  ASSERT_EQ(p.moves.size(), 2U);
  EXPECT_EQ(p.moves[0], (Move{.tp = a, .from = BrokerId(3), .to = BrokerId(4)}));
  EXPECT_EQ(p.moves[1], (Move{.tp = b, .from = std::nullopt, .to = BrokerId(5)}));
  ASSERT_EQ(p.leader_changes.size(), 1U);
  EXPECT_EQ(p.leader_changes[0], (LeaderChange{.tp = a, .from = BrokerId(1), .to = BrokerId(2)}));
}

// The exact output for a small input, pinned: placement must not change between machines,
// compilers or releases without this test (and the migration it implies) changing too.
TEST(Placement, PinnedOutputForASmallCluster) {
  std::vector<Broker> brokers;
  for (int32_t i = 1; i <= 5; ++i) {
    brokers.push_back(
        {.id = BrokerId(i), .rack = i <= 3 ? "r1" : "r2", .weight = i == 5 ? 2u : 1u});
  }
  const Assignment a = must_assign(brokers, topic_partitions(2, 4, 3));
  std::string text;
  for (const PartitionAssignment& p : a) {
    text += p.tp.topic + "-" + std::to_string(*p.tp.partition) + ":";
    for (const BrokerId id : p.replicas) text += " " + std::to_string(*id);
    text += "\n";
  }
  EXPECT_EQ(text,
            "t0-0: 3 5 1\nt0-1: 5 2 3\nt0-2: 1 5 2\nt0-3: 1 5 4\n"
            "t1-0: 5 1 4\nt1-1: 4 5 3\nt1-2: 5 3 2\nt1-3: 2 4 5\n");
}

}  // namespace
}  // namespace sluice::partitioner
