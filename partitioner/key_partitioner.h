// Kafka's default key -> partition function, bit-for-bit as the Java client computes it
// (org.apache.kafka.common.utils.Utils.murmur2 and BuiltInPartitioner.partitionForKey):
//   partition = toPositive(murmur2(keyBytes)) % numPartitions
// toPositive masks the sign bit (x & 0x7fffffff); it is NOT abs(). kafka-python, KafkaJS,
// franz-go and librdkafka's "murmur2"/"murmur2_random" partitioners agree with it, so a Sluice
// producer that uses this puts keyed records where those clients would.
// Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace sluice::partitioner {

// MurmurHash2 (32-bit) with Kafka's seed 0x9747b28c; bytes are read as unsigned, blocks
// little-endian, all arithmetic on uint32 with wrap-around.
uint32_t murmur2(std::span<const std::byte> key);
uint32_t murmur2(std::string_view key);

// Java's Utils.toPositive: clears the sign bit.
constexpr int32_t to_positive(uint32_t hash) { return static_cast<int32_t>(hash & 0x7fffffffU); }

// The partition for a non-null key. `partition_count` must be > 0 (asserted).
int32_t partition_for_key(std::span<const std::byte> key, int32_t partition_count);
int32_t partition_for_key(std::string_view key, int32_t partition_count);

}  // namespace sluice::partitioner
