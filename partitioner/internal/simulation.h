// The placement simulation behind placement_sim and its test: grow a cluster one broker at a
// time, shrink it back, and measure Sluice's placement next to three baselines.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "partitioner/placement.h"

namespace sluice::partitioner::detail {

enum class Algorithm : uint8_t {
  kSluice,           // assign() given the current assignment
  kKafkaRoundRobin,  // Kafka's rack-unaware assignment, random start, regenerated each step
  kHashModN,         // replicas at hash(tp) mod N and the next brokers
  kSlots128,         // 128 slots filled round-robin over the brokers; tp -> hash mod 128
};
inline constexpr size_t kAlgorithmCount = 4;
const char* algorithm_name(Algorithm algorithm);

// Every baseline as a function of the broker list alone (ids sorted ascending).
Assignment kafka_round_robin(const std::vector<Broker>& brokers,
                             const std::vector<PartitionSpec>& partitions, uint64_t seed);
Assignment hash_mod_n(const std::vector<Broker>& brokers,
                      const std::vector<PartitionSpec>& partitions);
Assignment slots_128(const std::vector<Broker>& brokers,
                     const std::vector<PartitionSpec>& partitions);

struct SimConfig {
  int32_t partitions = 1000;
  int32_t partitions_per_topic = 100;
  int32_t replication_factor = 3;
  int32_t brokers_min = 3;
  int32_t brokers_max = 24;
  uint64_t seed = 1;  // Kafka round-robin's random starts
  double epsilon = Options{}.epsilon;
};

struct Figures {
  uint64_t moved = 0;                // replicas placed on a broker that did not hold them
  double load_max_over_mean = 0;     // replicas
  double leaders_max_over_mean = 0;  // preferred leaders
};

struct SimStep {
  int32_t brokers_before = 0;  // 0 for the initial placement
  int32_t brokers_after = 0;
  // Fewest replicas any placement must move to stay balanced: the joining broker's share
  // (R / (N + 1)) or the leaving broker's share of a balanced cluster (R / N).
  double minimum = 0;
  std::array<Figures, kAlgorithmCount> figures{};
};

std::vector<SimStep> run_simulation(const SimConfig& config);

// A Markdown table of the steps, then the worst figures per algorithm.
std::string format_table(const SimConfig& config, const std::vector<SimStep>& steps);

}  // namespace sluice::partitioner::detail
