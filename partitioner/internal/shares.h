// Integer shares: each broker's share of a total, proportional to its weight and capped per
// broker (water-filling), and the load bounds derived from it. Exact integer arithmetic, so
// the bounds are the same on every machine.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace sluice::partitioner::detail {

// For one broker: share = num / den (a rational), and
//   floor = floor(share), ceil = ceil(share),
//   lo = floor((1 - eps) * share), hi = min(max, ceil((1 + eps) * share)).
struct Bounds {
  uint64_t floor = 0;
  uint64_t ceil = 0;
  uint64_t lo = 0;
  uint64_t hi = 0;
};

inline constexpr uint64_t kPpm = 1'000'000;

// Splits `total` over the items in proportion to `weights`, no item above its `max`
// (sum of max must be >= total). `epsilon_ppm` is epsilon in millionths. `forced` (empty, or
// one count per item) is what an item must take whatever the weights say, such as a
// partition replicated on every broker: it is set aside, the rest is shared, and each item's
// bounds are its forced count plus its share of the rest.
std::vector<Bounds> share_bounds(std::span<const uint32_t> weights, uint64_t total,
                                 std::span<const uint64_t> max, uint64_t epsilon_ppm,
                                 std::span<const uint64_t> forced = {});

}  // namespace sluice::partitioner::detail
