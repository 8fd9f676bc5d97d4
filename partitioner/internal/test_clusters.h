// Helpers shared by the partitioner's tests and simulation: building clusters and counting.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "partitioner/placement.h"

namespace sluice::partitioner::detail {

// splitmix64: a tiny, fully specified PRNG, so seeded runs repeat on every machine.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform enough in [0, n) for tests (n is small next to 2^64).
  uint64_t below(uint64_t n) { return next() % n; }

 private:
  uint64_t state_;
};

inline std::vector<Broker> plain_brokers(int32_t first_id, int32_t count) {
  std::vector<Broker> out;
  for (int32_t i = 0; i < count; ++i) out.push_back({.id = BrokerId(first_id + i)});
  return out;
}

// `topics` topics named t0, t1, ... with `per_topic` partitions each.
inline std::vector<PartitionSpec> topic_partitions(int32_t topics, int32_t per_topic,
                                                   int32_t replication_factor) {
  std::vector<PartitionSpec> out;
  for (int32_t t = 0; t < topics; ++t) {
    for (int32_t p = 0; p < per_topic; ++p) {
      out.push_back({.tp = {.topic = "t" + std::to_string(t), .partition = PartitionId(p)},
                     .replication_factor = replication_factor});
    }
  }
  return out;
}

// Replicas that land on a broker that did not hold them before (RF changes aside).
inline uint64_t replicas_moved(const Assignment& from, const Assignment& to) {
  uint64_t moved = 0;
  for (const Move& m : plan(from, to).moves) moved += m.to.has_value() ? 1 : 0;
  return moved;
}

}  // namespace sluice::partitioner::detail
