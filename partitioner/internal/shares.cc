#include "partitioner/internal/shares.h"

#include <algorithm>

#include "common/assert.h"

namespace sluice::partitioner::detail {
namespace {

using U128 = unsigned __int128;

uint64_t div_floor(U128 num, U128 den) { return static_cast<uint64_t>(num / den); }
uint64_t div_ceil(U128 num, U128 den) { return static_cast<uint64_t>((num + den - 1) / den); }

}  // namespace

std::vector<Bounds> share_bounds(std::span<const uint32_t> weights, uint64_t total,
                                 std::span<const uint64_t> max_in, uint64_t epsilon_ppm,
                                 std::span<const uint64_t> forced) {
  SLUICE_ASSERT(weights.size() == max_in.size());
  SLUICE_ASSERT(forced.empty() || forced.size() == weights.size());
  SLUICE_ASSERT(!weights.empty());
  const size_t n = weights.size();
  std::vector<uint64_t> max(max_in.begin(), max_in.end());
  for (size_t i = 0; i < forced.size(); ++i) {
    SLUICE_ASSERT(forced[i] <= max[i] && forced[i] <= total);
    max[i] -= forced[i];
    total -= forced[i];
  }
  // Water-filling: an item whose proportional share exceeds its max is pinned at its max and
  // the rest is shared again. Pinning every such item at once is exact: pinning only raises
  // the others' shares, so an item over its max stays over it.
  std::vector<bool> pinned(n, false);
  U128 weight_left = 0;
  U128 total_left = 0;
  for (bool changed = true; changed;) {
    changed = false;
    weight_left = 0;
    total_left = total;
    for (size_t i = 0; i < n; ++i) {
      if (pinned[i]) {
        SLUICE_ASSERT(total_left >= max[i]);
        total_left -= max[i];
      } else {
        weight_left += weights[i];
      }
    }
    if (weight_left == 0) break;
    for (size_t i = 0; i < n; ++i) {
      if (!pinned[i] && total_left * weights[i] > U128{max[i]} * weight_left) {
        pinned[i] = true;
        changed = true;
      }
    }
  }
  std::vector<Bounds> bounds(n);
  const U128 den = weight_left == 0 ? 1 : weight_left;
  for (size_t i = 0; i < n; ++i) {
    const U128 num = pinned[i] ? U128{max[i]} * den : total_left * weights[i];
    Bounds& b = bounds[i];
    b.floor = div_floor(num, den);
    b.ceil = div_ceil(num, den);
    b.hi = std::min(max[i], div_ceil(num * (kPpm + epsilon_ppm), den * kPpm));
    b.lo = epsilon_ppm >= kPpm ? 0 : div_floor(num * (kPpm - epsilon_ppm), den * kPpm);
    SLUICE_ASSERT(b.lo <= b.floor && b.floor <= b.ceil && b.ceil <= b.hi);
    SLUICE_ASSERT(b.hi <= max[i]);
    if (!forced.empty()) {
      b.floor += forced[i];
      b.ceil += forced[i];
      b.lo += forced[i];
      b.hi += forced[i];
    }
  }
  return bounds;
}

}  // namespace sluice::partitioner::detail
