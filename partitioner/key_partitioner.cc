#include "partitioner/key_partitioner.h"

#include "common/assert.h"

namespace sluice::partitioner {

uint32_t murmur2(std::span<const std::byte> key) {
  constexpr uint32_t kSeed = 0x9747b28c;
  constexpr uint32_t kM = 0x5bd1e995;
  constexpr int kR = 24;
  const auto byte_at = [&](size_t i) { return static_cast<uint32_t>(key[i]); };
  const size_t length = key.size();
  uint32_t h = kSeed ^ static_cast<uint32_t>(length);
  const size_t blocks_end = length & ~size_t{3};
  for (size_t i = 0; i < blocks_end; i += 4) {
    uint32_t k =
        byte_at(i) | (byte_at(i + 1) << 8) | (byte_at(i + 2) << 16) | (byte_at(i + 3) << 24);
    k *= kM;
    k ^= k >> kR;
    k *= kM;
    h *= kM;
    h ^= k;
  }
  switch (length & 3) {
    case 3:
      h ^= byte_at(blocks_end + 2) << 16;
      [[fallthrough]];
    case 2:
      h ^= byte_at(blocks_end + 1) << 8;
      [[fallthrough]];
    case 1:
      h ^= byte_at(blocks_end);
      h *= kM;
  }
  h ^= h >> 13;
  h *= kM;
  h ^= h >> 15;
  return h;
}

uint32_t murmur2(std::string_view key) {
  return murmur2(std::as_bytes(std::span<const char>(key.data(), key.size())));
}

int32_t partition_for_key(std::span<const std::byte> key, int32_t partition_count) {
  SLUICE_ASSERT(partition_count > 0);
  const int32_t partition = to_positive(murmur2(key)) % partition_count;
  SLUICE_ASSERT(partition >= 0 && partition < partition_count);
  return partition;
}

int32_t partition_for_key(std::string_view key, int32_t partition_count) {
  return partition_for_key(std::as_bytes(std::span<const char>(key.data(), key.size())),
                           partition_count);
}

}  // namespace sluice::partitioner
