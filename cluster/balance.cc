#include "cluster/balance.h"

#include <algorithm>
#include <map>

#include "cluster/metadata.h"
#include "partitioner/placement.h"

namespace sluice::cluster {

namespace {

bool takes_replicas(const pb::Broker& b) { return !b.decommissioned(); }

}  // namespace

BalancePlan plan_balance(const pb::Image& img, const BalanceOptions& options) {
  BalancePlan out;
  std::vector<partitioner::Broker> brokers;
  for (const auto& [id, b] : img.brokers()) {
    if (takes_replicas(b)) brokers.push_back(partitioner::Broker{BrokerId(id), b.rack(), 1});
  }
  if (brokers.empty()) return out;
  std::sort(brokers.begin(), brokers.end(),
            [](const auto& a, const auto& b) { return a.id < b.id; });
  const int32_t n = static_cast<int32_t>(brokers.size());
  std::vector<partitioner::PartitionSpec> specs;
  partitioner::Assignment current;
  std::map<partitioner::TopicPartition, const pb::Partition*> parts;
  for (const auto& [name, t] : img.topics()) {
    for (int i = 0; i < t.partitions_size(); ++i) {
      const pb::Partition& p = t.partitions(i);
      partitioner::TopicPartition tp{name, PartitionId(i)};
      const std::vector<int32_t> placed = target_replicas(p);
      // Never shrinks a partition: with fewer brokers than its replicas (the controller
      // refuses a decommission that would get there), it stays as it is.
      if (placed.empty() || static_cast<int32_t>(placed.size()) > n) continue;
      specs.push_back({tp, static_cast<int32_t>(placed.size())});
      partitioner::PartitionAssignment a{tp, {}};
      for (int32_t r : placed) a.replicas.push_back(BrokerId(r));
      current.push_back(std::move(a));
      parts[tp] = &p;
    }
  }
  std::sort(current.begin(), current.end(),
            [](const auto& a, const auto& b) { return a.tp < b.tp; });
  partitioner::Options opts;
  opts.epsilon = options.epsilon;
  auto desired = partitioner::assign(brokers, specs, opts, &current);
  if (!desired) return out;
  auto fenced = [&img](int32_t id) {
    auto it = img.brokers().find(id);
    return it == img.brokers().end() || it->second.fenced();
  };
  size_t ci = 0;
  for (const auto& want : *desired) {
    while (ci < current.size() && current[ci].tp < want.tp) ++ci;
    if (ci >= current.size() || !(current[ci].tp == want.tp)) continue;
    std::vector<int32_t> have, target;
    for (BrokerId b : current[ci].replicas) have.push_back(*b);
    for (BrokerId b : want.replicas) target.push_back(*b);
    std::vector<int32_t> a = have, b = target;
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    if (a == b) continue;  // the same replicas (an order change is not a move)
    const pb::Partition& p = *parts[want.tp];
    if (moving(p)) continue;
    ++out.pending;
    bool waits = false;
    for (int32_t id : target) {
      if (!std::binary_search(a.begin(), a.end(), id) && fenced(id)) waits = true;
    }
    if (waits || out.moves.size() >= options.max_moves) continue;
    out.moves.push_back(PlannedMove{want.tp.topic, *want.tp.partition, std::move(target)});
  }
  return out;
}

std::vector<std::pair<int32_t, size_t>> replica_loads(const pb::Image& img) {
  std::map<int32_t, size_t> count;
  for (const auto& [id, b] : img.brokers()) {
    if (takes_replicas(b)) count[id] = 0;
  }
  for (const auto& [name, t] : img.topics()) {
    for (const auto& p : t.partitions()) {
      for (int32_t r : target_replicas(p)) {
        auto it = count.find(r);
        if (it != count.end()) ++it->second;
      }
    }
  }
  return {count.begin(), count.end()};
}

bool needs_balance(const pb::Image& img, bool underloaded) {
  size_t total = 0;
  for (const auto& [name, t] : img.topics()) {
    for (const auto& p : t.partitions()) {
      for (int32_t r : p.replicas()) {
        auto it = img.brokers().find(r);
        if (it != img.brokers().end() && it->second.decommissioned()) return true;
      }
      total += static_cast<size_t>(p.replicas_size());
    }
  }
  const auto loads = replica_loads(img);
  if (!underloaded || loads.empty() || total == 0) return false;
  const double mean = static_cast<double>(total) / static_cast<double>(loads.size());
  for (const auto& [id, n] : loads) {
    if (static_cast<double>(n) < mean / 2) return true;
  }
  return false;
}

}  // namespace sluice::cluster
