// Replica placement: which brokers hold each partition's replicas, and which of them is the
// preferred leader. A pure library (no I/O, no clock, no threads, no global state); the
// controller calls it when topics are created and when brokers join or leave.
//
// Scheme: weighted rendezvous (highest-random-weight) hashing with bounded loads. Every
// partition ranks every broker by a fixed hash of (partition, broker) scaled by the broker's
// weight; replicas go to the best-ranked brokers that still have room under the load cap and
// keep racks distinct. Given the current assignment, replicas stay where they are unless a
// broker left, a broker is over its cap, a broker is far below its share, or a rack limit is
// broken and can be mended; only those replicas move, and the ranking picks which. See
// placement.cc for why rendezvous hashing rather than a ring of virtual nodes.
//
// Deterministic: the output depends only on the input's content, not on the order of the
// brokers, partitions or current-assignment entries, nor on the machine.
#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/ids.h"
#include "common/result.h"

namespace sluice::partitioner {

inline constexpr uint32_t kWeightMax = 1'000'000;
inline constexpr double kEpsilonMax = 10.0;

struct Broker {
  BrokerId id;
  std::string rack;     // empty: no rack (the broker counts as a rack of its own)
  uint32_t weight = 1;  // relative capacity, 1..kWeightMax; shares of replicas and leaders
};

struct TopicPartition {
  std::string topic;
  PartitionId partition;
  auto operator<=>(const TopicPartition&) const = default;
};

struct PartitionSpec {
  TopicPartition tp;
  int32_t replication_factor = 3;
};

// An ordered replica list; replicas[0] is the preferred leader.
struct PartitionAssignment {
  TopicPartition tp;
  std::vector<BrokerId> replicas;
  bool operator==(const PartitionAssignment&) const = default;
};

// Sorted by tp, one entry per partition.
using Assignment = std::vector<PartitionAssignment>;

struct Options {
  // Load cap: no broker holds more than ceil((1 + epsilon) * share) replicas, where share is
  // its weighted share of all replicas (the mean when weights are equal).
  double epsilon = 0.05;
};

enum class PlacementErrc : uint8_t {
  kNoBrokers = 1,
  kDuplicateBroker,
  kBadWeight,
  kDuplicatePartition,
  kBadReplicationFactor,  // < 1, or more than there are brokers
  kBadEpsilon,
};

// Places every partition in `partitions` on `brokers`. With `current`, replicas stay where
// they are where the rules allow (entries for partitions not in `partitions`, and replicas on
// brokers not in `brokers`, are ignored). Guarantees, when the inputs allow them:
// - each partition gets replication_factor distinct brokers;
// - no broker holds more than its cap (see Options). Should no broker outside a partition
//   have room even after one swap of another partition's replica, the least-over broker
//   takes it; thousands of random clusters in the property tests never get there;
// - racks: at most ceil(rf / rack count) replicas of a partition share a rack (all distinct
//   when there are at least rf racks); this gives way to the cap when a rack is too small
//   to take its part, and then no single move to a broker with room would fix it;
// - every broker leads about its weighted share of the partitions (within one, when the
//   replica sets allow it).
Result<Assignment> assign(std::span<const Broker> brokers,
                          std::span<const PartitionSpec> partitions, const Options& options,
                          const Assignment* current = nullptr);

// One replica to move: add `to` to the partition's replica set, let it catch up, then remove
// `from` (Raft single-server membership changes). `from` is empty when the replication factor
// grew, `to` when it shrank.
struct Move {
  TopicPartition tp;
  std::optional<BrokerId> from;
  std::optional<BrokerId> to;
  bool operator==(const Move&) const = default;
};

// A change of preferred leader (a leadership transfer, no data moves).
struct LeaderChange {
  TopicPartition tp;
  BrokerId from;
  BrokerId to;
  bool operator==(const LeaderChange&) const = default;
};

struct Plan {
  std::vector<Move> moves;                   // sorted by tp, then slot
  std::vector<LeaderChange> leader_changes;  // sorted by tp
};

// The moves and leader changes that turn `from` into `to`, for the partitions present in
// both (creating or deleting a partition is not a move). A replica that only changes position
// in the list is not a move. Both inputs must be sorted by tp (as assign returns them).
Plan plan(const Assignment& from, const Assignment& to);

// Replicas per broker and leaders per broker, in the order of `brokers`; replicas on brokers
// not listed are not counted. For tests, tools and the controller's metrics.
struct Loads {
  std::vector<uint64_t> replicas;
  std::vector<uint64_t> leaders;
};
Loads loads(std::span<const Broker> brokers, const Assignment& assignment);

}  // namespace sluice::partitioner
