// Property tests over random seeded clusters. Each cluster's seed is printed on failure;
// SLUICE_SEED=<n> reruns one cluster, SLUICE_LONG=1 runs ten times as many.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <set>

#include "partitioner/internal/shares.h"
#include "partitioner/internal/test_clusters.h"
#include "partitioner/placement.h"

namespace sluice::partitioner {

namespace {

// Readable failure output: one line per partition that differs.
std::string diff(const Assignment& a, const Assignment& b) {
  std::string out;
  const auto line = [](const PartitionAssignment& p) {
    std::string s = p.tp.topic + "-" + std::to_string(*p.tp.partition) + ":";
    for (const BrokerId id : p.replicas) s += " " + std::to_string(*id);
    return s;
  };
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    if (!(a[i] == b[i])) out += line(a[i]) + "  vs  " + line(b[i]) + "\n";
  }
  if (a.size() != b.size()) out += "sizes differ\n";
  return out;
}

using detail::SplitMix64;

enum class RackShape { kNone, kBalanced, kRandom };

struct Cluster {
  std::vector<Broker> brokers;
  std::vector<PartitionSpec> partitions;
  Options options;
  RackShape racks = RackShape::kNone;
  bool equal_weights = true;
};

Broker random_broker(SplitMix64& rng, int32_t id, const Cluster& c, size_t rack_count) {
  Broker b{.id = BrokerId(id)};
  if (c.racks == RackShape::kBalanced) b.rack = "r" + std::to_string(id % rack_count);
  if (c.racks == RackShape::kRandom) b.rack = "r" + std::to_string(rng.below(rack_count));
  if (!c.equal_weights) b.weight = static_cast<uint32_t>(1 + rng.below(4));
  return b;
}

Cluster random_cluster(uint64_t seed) {
  SplitMix64 rng(seed);
  Cluster c;
  c.racks = static_cast<RackShape>(rng.below(3));
  c.equal_weights = rng.below(3) != 0;
  const size_t rack_count = 2 + rng.below(4);
  // Balanced racks: a multiple of the rack count, ids spaced so id % racks cycles evenly.
  size_t n = 3 + rng.below(28);
  if (c.racks == RackShape::kBalanced) n = std::max<size_t>(1, n / rack_count) * rack_count;
  for (size_t i = 0; i < n; ++i) {
    c.brokers.push_back(random_broker(rng, static_cast<int32_t>(100 + i), c, rack_count));
  }
  const uint64_t topics = 1 + rng.below(5);
  for (uint64_t t = 0; t < topics; ++t) {
    const uint64_t count = 1 + rng.below(200);
    const auto rf = static_cast<int32_t>(1 + rng.below(std::min<uint64_t>(n, 4)));
    for (uint64_t p = 0; p < count; ++p) {
      c.partitions.push_back({.tp = {.topic = "topic-" + std::to_string(t),
                                     .partition = PartitionId(static_cast<int32_t>(p))},
                              .replication_factor = rf});
    }
  }
  const double eps[] = {0.02, 0.05, 0.1, 0.25};
  c.options.epsilon = eps[rng.below(4)];
  return c;
}

std::string describe(const Cluster& c) {
  std::string out = "brokers:";
  for (const Broker& b : c.brokers) {
    out += " " + std::to_string(*b.id) + "/" + b.rack + "/w" + std::to_string(b.weight);
  }
  std::map<std::string, std::pair<int, int32_t>> topics;
  for (const PartitionSpec& p : c.partitions) {
    ++topics[p.tp.topic].first;
    topics[p.tp.topic].second = p.replication_factor;
  }
  for (const auto& [name, t] : topics) {
    out += " | " + name + " x" + std::to_string(t.first) + " rf" + std::to_string(t.second);
  }
  return out + " | eps " + std::to_string(c.options.epsilon);
}

template <class T>
std::vector<T> shuffled(std::vector<T> v, SplitMix64& rng) {
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[rng.below(i)]);
  return v;
}

std::vector<uint64_t> seeds() {
  if (const char* s = std::getenv("SLUICE_SEED")) return {std::strtoull(s, nullptr, 10)};
  const uint64_t count = std::getenv("SLUICE_LONG") != nullptr ? 3000 : 300;
  std::vector<uint64_t> out;
  for (uint64_t i = 1; i <= count; ++i) out.push_back(i);
  return out;
}

// The bounds assign works to, recomputed from the definition: shares of all replicas by
// weight (at most one replica per partition per broker), and of all leaders by weight (at
// most as many as the broker holds).
struct Expected {
  std::vector<detail::Bounds> replicas;
  std::vector<detail::Bounds> leaders;
};

Expected expected_bounds(const Cluster& c, const Assignment& a) {
  const Loads l = loads(c.brokers, a);
  std::vector<uint64_t> single_replica_leaders(c.brokers.size(), 0);
  for (const PartitionAssignment& p : a) {
    for (size_t b = 0; b < c.brokers.size(); ++b) {
      if (p.replicas.size() == 1 && p.replicas[0] == c.brokers[b].id) ++single_replica_leaders[b];
    }
  }
  std::vector<uint32_t> w;
  for (const Broker& b : c.brokers) w.push_back(b.weight);
  uint64_t total = 0;
  for (const PartitionSpec& p : c.partitions) total += p.replication_factor;
  const std::vector<uint64_t> max(c.brokers.size(), c.partitions.size());
  const auto ppm = static_cast<uint64_t>(std::llround(c.options.epsilon * 1e6));
  // Set aside: partitions on every broker (replicas), partitions with one replica (leaders).
  uint64_t everywhere = 0;
  for (const PartitionSpec& p : c.partitions) {
    everywhere += static_cast<size_t>(p.replication_factor) == c.brokers.size() ? 1 : 0;
  }
  return {
      detail::share_bounds(w, total, max, ppm, std::vector<uint64_t>(c.brokers.size(), everywhere)),
      detail::share_bounds(w, c.partitions.size(), l.replicas, 0, single_replica_leaders)};
}

std::string rack_of(const Cluster& c, BrokerId id, size_t* index = nullptr) {
  for (size_t i = 0; i < c.brokers.size(); ++i) {
    if (c.brokers[i].id == id) {
      if (index != nullptr) *index = i;
      return c.brokers[i].rack.empty() ? "#" + std::to_string(*id) : c.brokers[i].rack;
    }
  }
  ADD_FAILURE() << "unknown broker " << *id;
  return "";
}

size_t rack_limit(const Cluster& c, int32_t rf) {
  std::set<std::string> racks;
  for (const Broker& b : c.brokers) racks.insert(rack_of(c, b.id));
  return (static_cast<size_t>(rf) + racks.size() - 1) / racks.size();
}

// Checks every property of one assignment; returns the number of rack-limit breaches.
size_t check_assignment(const Cluster& c, const Assignment& a, uint64_t seed) {
  SCOPED_TRACE("SLUICE_SEED=" + std::to_string(seed) + " " + describe(c));
  EXPECT_EQ(a.size(), c.partitions.size());
  const Loads l = loads(c.brokers, a);
  const Expected want = expected_bounds(c, a);
  std::map<BrokerId, size_t> index;
  for (size_t i = 0; i < c.brokers.size(); ++i) index[c.brokers[i].id] = i;
  size_t breaches = 0;
  bool all_have_choice = true;
  for (const PartitionAssignment& p : a) {
    all_have_choice = all_have_choice && p.replicas.size() >= 2;
    const std::set<BrokerId> distinct(p.replicas.begin(), p.replicas.end());
    EXPECT_EQ(distinct.size(), p.replicas.size()) << p.tp.topic;
    std::map<std::string, size_t> per_rack;
    for (const BrokerId id : p.replicas) ++per_rack[rack_of(c, id)];
    const size_t limit = rack_limit(c, static_cast<int32_t>(p.replicas.size()));
    bool breach = false;
    for (const auto& [rack, count] : per_rack) breach = breach || count > limit;
    if (!breach) continue;
    ++breaches;
    // A breach is allowed only when no single move to a broker with room would fix it.
    for (size_t b = 0; b < c.brokers.size(); ++b) {
      const std::string r = rack_of(c, c.brokers[b].id);
      const bool room = l.replicas[b] < want.replicas[b].hi;
      const bool rack_free = per_rack[r] < limit;
      EXPECT_FALSE(room && rack_free && !distinct.contains(c.brokers[b].id))
          << p.tp.topic << "-" << *p.tp.partition << " could move to broker " << *c.brokers[b].id;
    }
  }
  for (size_t b = 0; b < c.brokers.size(); ++b) {
    EXPECT_LE(l.replicas[b], want.replicas[b].hi) << "broker " << *c.brokers[b].id;
    // Stated leader bound: within one of the weighted share (see Expected), and within two
    // when single-replica partitions (whose leaders are fixed) can make one impossible.
    const uint64_t slack = all_have_choice ? 0 : 1;
    EXPECT_LE(l.leaders[b], want.leaders[b].ceil + slack) << "broker " << *c.brokers[b].id;
    EXPECT_GE(l.leaders[b] + slack, want.leaders[b].floor) << "broker " << *c.brokers[b].id;
  }
  return breaches;
}

TEST(PlacementProperty, RandomClustersKeepEveryInvariant) {
  std::string balanced_breaches;
  for (const uint64_t seed : seeds()) {
    const Cluster c = random_cluster(seed);
    auto a = assign(c.brokers, c.partitions, c.options);
    ASSERT_TRUE(a.has_value()) << a.error().message << " SLUICE_SEED=" << seed;
    const size_t breaches = check_assignment(c, *a, seed);
    if (c.racks == RackShape::kBalanced && c.equal_weights && breaches > 0) {
      balanced_breaches += " SLUICE_SEED=" + std::to_string(seed) + " " + describe(c);
    }
  }
  // Equal racks of equal brokers can always spread every partition.
  EXPECT_EQ(balanced_breaches, "");
}

TEST(PlacementProperty, OutputDependsOnlyOnContentNotOrder) {
  for (const uint64_t seed : seeds()) {
    const Cluster c = random_cluster(seed);
    SplitMix64 rng(seed ^ 0xabcdef);
    const auto a = assign(c.brokers, c.partitions, c.options);
    ASSERT_TRUE(a.has_value());
    const auto b = assign(shuffled(c.brokers, rng), shuffled(c.partitions, rng), c.options);
    ASSERT_TRUE(b.has_value());
    ASSERT_EQ(diff(*a, *b), "") << "SLUICE_SEED=" << seed;
    // The same with a current assignment (one broker fewer) given in shuffled order.
    Cluster smaller = c;
    smaller.brokers.pop_back();
    if (smaller.brokers.size() < 4) continue;
    for (PartitionSpec& p : smaller.partitions) {
      p.replication_factor = std::min<int32_t>(p.replication_factor, 3);
    }
    const auto current = assign(smaller.brokers, smaller.partitions, c.options);
    ASSERT_TRUE(current.has_value());
    const Assignment shuffled_current = shuffled(*current, rng);
    const auto x = assign(c.brokers, c.partitions, c.options, &*current);
    const auto y =
        assign(shuffled(c.brokers, rng), shuffled(c.partitions, rng), c.options, &shuffled_current);
    ASSERT_TRUE(x.has_value() && y.has_value());
    ASSERT_EQ(diff(*x, *y), "") << "SLUICE_SEED=" << seed;
  }
}

TEST(PlacementProperty, ReassigningTheSameClusterMovesNothing) {
  for (const uint64_t seed : seeds()) {
    const Cluster c = random_cluster(seed);
    const auto a = assign(c.brokers, c.partitions, c.options);
    ASSERT_TRUE(a.has_value());
    const auto again = assign(c.brokers, c.partitions, c.options, &*a);
    ASSERT_TRUE(again.has_value());
    ASSERT_EQ(diff(*a, *again), "") << "SLUICE_SEED=" << seed << " " << describe(c);
  }
}

// One broker joins or leaves: the result keeps every invariant, and the replicas moved stay
// within 1.25x the minimum (the joining broker's share, or the leaving broker's replicas),
// plus four: with a handful of replicas per broker the [lo, hi] band is a replica or two wide
// and a leave can drop a broker below it (the simulation checks the ratio at real sizes).
TEST(PlacementProperty, OneBrokerJoiningOrLeavingMovesCloseToTheMinimum) {
  uint64_t moves_total = 0;
  uint64_t moves_elsewhere = 0;  // moves not to the joining / not from the leaving broker
  for (const uint64_t seed : seeds()) {
    Cluster c = random_cluster(seed);
    // With racks a join or leave can change what each rack must carry, which moves more than
    // one broker's share; those clusters are checked for invariants above, not for this bound.
    if (c.racks != RackShape::kNone) continue;
    SplitMix64 rng(seed * 31);
    const auto before = assign(c.brokers, c.partitions, c.options);
    ASSERT_TRUE(before.has_value());
    const bool join = c.brokers.size() <= 4 || rng.below(2) == 0;
    uint64_t minimum = 0;
    if (join) {
      c.brokers.push_back(random_broker(rng, 7, c, 1));
      minimum = expected_bounds(c, *before).replicas.back().floor;
    } else {
      const size_t gone = rng.below(c.brokers.size());
      minimum = loads(c.brokers, *before).replicas[gone];
      c.brokers.erase(c.brokers.begin() + static_cast<ptrdiff_t>(gone));
    }
    const auto after = assign(c.brokers, c.partitions, c.options, &*before);
    ASSERT_TRUE(after.has_value());
    check_assignment(c, *after, seed);
    const uint64_t moved = detail::replicas_moved(*before, *after);
    for (const Move& m : plan(*before, *after).moves) {
      const BrokerId changed = join ? *m.to : *m.from;  // the joining or leaving broker
      const bool elsewhere = join ? changed != c.brokers.back().id
                                  : std::any_of(c.brokers.begin(), c.brokers.end(),
                                                [&](const Broker& b) { return b.id == changed; });
      moves_elsewhere += elsewhere ? 1 : 0;
      moves_total += 1;
    }
    EXPECT_LE(double(moved), 1.25 * double(minimum) + 4)
        << (join ? "join" : "leave") << " SLUICE_SEED=" << seed << " " << describe(c);
    if (!join) {
      EXPECT_GE(moved, minimum);
    }
  }
  // Nearly every move involves the broker that joined or left; the rest are pulls for a
  // broker pushed below (1 - epsilon) of its share (about 1% of moves over these clusters).
  EXPECT_LE(double(moves_elsewhere), 0.02 * double(moves_total))
      << moves_elsewhere << " of " << moves_total;
}

}  // namespace
}  // namespace sluice::partitioner
