#include "partitioner/internal/simulation.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>

#include "common/assert.h"
#include "partitioner/internal/hash.h"
#include "partitioner/internal/test_clusters.h"

namespace sluice::partitioner::detail {
namespace {

uint64_t tp_hash(const TopicPartition& tp) {
  return fmix64(fnv1a64(tp.topic) ^ static_cast<uint64_t>(static_cast<uint32_t>(*tp.partition)));
}

// Replica j of a list starting at broker index `first`: the next brokers in id order.
PartitionAssignment consecutive(const std::vector<Broker>& brokers, const PartitionSpec& p,
                                uint64_t first) {
  PartitionAssignment a{.tp = p.tp};
  for (int32_t j = 0; j < p.replication_factor; ++j) {
    a.replicas.push_back(brokers[(first + static_cast<uint64_t>(j)) % brokers.size()].id);
  }
  return a;
}

Figures measure(const std::vector<Broker>& brokers, const Assignment& before,
                const Assignment& after) {
  const Loads l = loads(brokers, after);
  uint64_t replicas = 0;
  for (const uint64_t r : l.replicas) replicas += r;
  const double n = static_cast<double>(brokers.size());
  const double load_mean = static_cast<double>(replicas) / n;
  const double leader_mean = static_cast<double>(after.size()) / n;
  return {
      .moved = before.empty() ? 0 : replicas_moved(before, after),
      .load_max_over_mean =
          static_cast<double>(*std::max_element(l.replicas.begin(), l.replicas.end())) / load_mean,
      .leaders_max_over_mean =
          static_cast<double>(*std::max_element(l.leaders.begin(), l.leaders.end())) / leader_mean};
}

}  // namespace

const char* algorithm_name(Algorithm algorithm) {
  switch (algorithm) {
    case Algorithm::kSluice:
      return "sluice";
    case Algorithm::kKafkaRoundRobin:
      return "kafka-rr";
    case Algorithm::kHashModN:
      return "hash-mod-n";
    case Algorithm::kSlots128:
      return "slots-128";
  }
  SLUICE_UNREACHABLE();
}

// AdminUtils.assignReplicasToBrokersRackUnaware (the path kafka-reassign-partitions --generate
// and topic creation take), per topic, with a fresh random start index and replica shift.
Assignment kafka_round_robin(const std::vector<Broker>& brokers,
                             const std::vector<PartitionSpec>& partitions, uint64_t seed) {
  SplitMix64 rng(seed);
  const auto n = static_cast<int64_t>(brokers.size());
  Assignment out;
  std::string topic;
  int64_t start = 0;
  int64_t shift = 0;
  for (const PartitionSpec& p : partitions) {
    if (out.empty() || p.tp.topic != topic) {
      topic = p.tp.topic;
      start = static_cast<int64_t>(rng.below(brokers.size()));
      shift = static_cast<int64_t>(rng.below(brokers.size()));
    }
    const int64_t id = *p.tp.partition;  // partitions of a topic arrive in order from 0
    if (id > 0 && id % n == 0) ++shift;
    const int64_t first = (id + start) % n;
    PartitionAssignment a{.tp = p.tp, .replicas = {brokers[first].id}};
    for (int64_t j = 0; j < p.replication_factor - 1; ++j) {
      const int64_t step = 1 + (shift + j) % (n - 1);
      a.replicas.push_back(brokers[(first + step) % n].id);
    }
    out.push_back(std::move(a));
  }
  return out;
}

Assignment hash_mod_n(const std::vector<Broker>& brokers,
                      const std::vector<PartitionSpec>& partitions) {
  Assignment out;
  for (const PartitionSpec& p : partitions) {
    out.push_back(consecutive(brokers, p, tp_hash(p.tp) % brokers.size()));
  }
  return out;
}

Assignment slots_128(const std::vector<Broker>& brokers,
                     const std::vector<PartitionSpec>& partitions) {
  constexpr uint64_t kSlots = 128;
  Assignment out;
  for (const PartitionSpec& p : partitions) {
    const uint64_t slot = tp_hash(p.tp) % kSlots;  // slot s belongs to broker s mod N
    out.push_back(consecutive(brokers, p, slot % brokers.size()));
  }
  return out;
}

std::vector<SimStep> run_simulation(const SimConfig& config) {
  SLUICE_ASSERT(config.brokers_min >= config.replication_factor);
  SLUICE_ASSERT(config.brokers_max >= config.brokers_min);
  SLUICE_ASSERT(config.partitions % config.partitions_per_topic == 0);
  const std::vector<PartitionSpec> partitions =
      topic_partitions(config.partitions / config.partitions_per_topic, config.partitions_per_topic,
                       config.replication_factor);
  const double replicas = static_cast<double>(config.partitions) * config.replication_factor;
  std::vector<int32_t> sizes;
  for (int32_t n = config.brokers_min; n <= config.brokers_max; ++n) sizes.push_back(n);
  for (int32_t n = config.brokers_max - 1; n >= config.brokers_min; --n) sizes.push_back(n);

  std::array<Assignment, kAlgorithmCount> current;
  std::vector<SimStep> steps;
  int32_t previous = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const int32_t n = sizes[i];
    const std::vector<Broker> brokers = plain_brokers(1, n);  // shrinking drops the newest
    SimStep step{.brokers_before = previous, .brokers_after = n};
    if (previous != 0) step.minimum = replicas / std::max(previous, n);
    auto sluice = assign(brokers, partitions, {.epsilon = config.epsilon},
                         current[0].empty() ? nullptr : &current[0]);
    SLUICE_ASSERT(sluice.has_value());
    const std::array<Assignment, kAlgorithmCount> next = {
        std::move(*sluice), kafka_round_robin(brokers, partitions, config.seed * 1000 + i),
        hash_mod_n(brokers, partitions), slots_128(brokers, partitions)};
    for (size_t a = 0; a < kAlgorithmCount; ++a) {
      step.figures[a] = measure(brokers, current[a], next[a]);
      current[a] = next[a];
    }
    steps.push_back(step);
    previous = n;
  }
  return steps;
}

std::string format_table(const SimConfig& config, const std::vector<SimStep>& steps) {
  std::string out;
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "%d partitions (%d topics of %d), replication factor %d, epsilon %.2f, "
                "seed %" PRIu64 "\n\n",
                config.partitions, config.partitions / config.partitions_per_topic,
                config.partitions_per_topic, config.replication_factor, config.epsilon,
                config.seed);
  out += buf;
  out += "| brokers | min moves |";
  for (size_t a = 0; a < kAlgorithmCount; ++a) {
    const char* name = algorithm_name(static_cast<Algorithm>(a));
    std::snprintf(buf, sizeof buf, " %s moved (x min) | load max/mean | leaders max/mean |", name);
    out += buf;
  }
  out += "\n|---|---|";
  for (size_t a = 0; a < kAlgorithmCount; ++a) out += "---|---|---|";
  out += "\n";
  std::array<Figures, kAlgorithmCount> worst{};
  std::array<double, kAlgorithmCount> worst_ratio{};
  for (const SimStep& s : steps) {
    if (s.brokers_before == 0) {
      std::snprintf(buf, sizeof buf, "| %d | - |", s.brokers_after);
    } else {
      std::snprintf(buf, sizeof buf, "| %d -> %d | %.0f |", s.brokers_before, s.brokers_after,
                    s.minimum);
    }
    out += buf;
    for (size_t a = 0; a < kAlgorithmCount; ++a) {
      const Figures& f = s.figures[a];
      const double ratio = s.minimum > 0 ? static_cast<double>(f.moved) / s.minimum : 0;
      if (s.brokers_before == 0) {
        std::snprintf(buf, sizeof buf, " - | %.3f | %.3f |", f.load_max_over_mean,
                      f.leaders_max_over_mean);
      } else {
        std::snprintf(buf, sizeof buf, " %" PRIu64 " (%.2f) | %.3f | %.3f |", f.moved, ratio,
                      f.load_max_over_mean, f.leaders_max_over_mean);
      }
      out += buf;
      worst_ratio[a] = std::max(worst_ratio[a], ratio);
      worst[a].load_max_over_mean = std::max(worst[a].load_max_over_mean, f.load_max_over_mean);
      worst[a].leaders_max_over_mean =
          std::max(worst[a].leaders_max_over_mean, f.leaders_max_over_mean);
    }
    out += "\n";
  }
  out += "| **worst** | |";
  for (size_t a = 0; a < kAlgorithmCount; ++a) {
    std::snprintf(buf, sizeof buf, " **%.2f x** | **%.3f** | **%.3f** |", worst_ratio[a],
                  worst[a].load_max_over_mean, worst[a].leaders_max_over_mean);
    out += buf;
  }
  return out + "\n";
}

}  // namespace sluice::partitioner::detail
