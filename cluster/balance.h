// The replica balancer's planning step, a pure function of the metadata image: which
// partitions should move, and where, so that placement matches what partitioner::assign wants
// over the brokers that take replicas (registered and not decommissioned). The controller
// leader starts the moves it returns (Reassign records, a bounded number at a time); each
// partition's Raft leader carries a move out (broker/reassign.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "cluster/cluster.pb.h"

namespace sluice::cluster {

struct PlannedMove {
  std::string topic;
  int32_t partition = 0;
  std::vector<int32_t> target;  // target[0]: the preferred leader
  bool operator==(const PlannedMove&) const = default;
};

struct BalanceOptions {
  double epsilon = 0.05;
  size_t max_moves = 16;  // partitions whose move starts now
};

struct BalancePlan {
  std::vector<PlannedMove> moves;  // at most max_moves, sorted by (topic, partition)
  size_t pending = 0;              // partitions that should move and are not moving yet
};

// Partitions already moving are left alone (they count as placed at their target); a move
// whose target takes in a fenced broker waits until it is back.
BalancePlan plan_balance(const pb::Image& image, const BalanceOptions& options);

// Does the image need the balancer: a decommissioned broker still holds replicas, or a broker
// that takes replicas holds fewer than half the mean (it joined, or came back after a
// recommission). The controller checks this when it becomes leader, so a balance interrupted
// by a controller failover resumes.
// With `underloaded` false only the first counts (automatic balancing is off).
bool needs_balance(const pb::Image& image, bool underloaded = true);

// Replicas per broker (brokers that take replicas only), for reports and tests.
std::vector<std::pair<int32_t, size_t>> replica_loads(const pb::Image& image);

}  // namespace sluice::cluster
