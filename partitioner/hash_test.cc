#include <gtest/gtest.h>

#include <cmath>

#include "partitioner/internal/hash.h"
#include "partitioner/internal/shares.h"

namespace sluice::partitioner::detail {
namespace {

// Published FNV-1a 64 test vectors (Fowler/Noll/Vo reference test suite).
TEST(PartitionerHash, Fnv1a64MatchesReferenceVectors) {
  EXPECT_EQ(fnv1a64(""), 0xcbf29ce484222325ULL);
  EXPECT_EQ(fnv1a64("a"), 0xaf63dc4c8601ec8cULL);
  EXPECT_EQ(fnv1a64("foobar"), 0x85944171f73967e8ULL);
}

TEST(PartitionerHash, Fmix64IsTheMurmur3Finalizer) {
  EXPECT_EQ(fmix64(0), 0U);
  // Pinned values: a change here changes every placement, which must be deliberate.
  EXPECT_EQ(fmix64(1), 0xb456bcfc34c2cb2cULL);
  EXPECT_EQ(fmix64(0x9e3779b97f4a7c15ULL) != fmix64(0x9e3779b97f4a7c14ULL), true);
}

TEST(PartitionerHash, Log2FixedIsAccurateAndMonotone) {
  EXPECT_EQ(log2_fixed32(1), 0U);
  EXPECT_EQ(log2_fixed32(2), uint64_t{1} << 32);
  EXPECT_EQ(log2_fixed32(uint64_t{1} << 53), uint64_t{53} << 32);
  uint64_t previous = 0;
  uint64_t x = 1;
  for (int i = 0; i < 200'000; ++i) {
    x = x + 1 + (x >> 7);
    if (x >= (uint64_t{1} << 54)) break;
    const uint64_t got = log2_fixed32(x);
    ASSERT_GE(got, previous) << x;
    previous = got;
    const double want = std::log2(static_cast<double>(x)) * 4294967296.0;
    ASSERT_NEAR(static_cast<double>(got), want, 8.0) << x;
  }
}

TEST(PartitionerShares, EqualWeightsSplitEvenly) {
  const std::vector<uint32_t> w(4, 1);
  const std::vector<uint64_t> max(4, 1000);
  const auto b = share_bounds(w, 3000, max, 50'000);
  for (const Bounds& x : b) {
    EXPECT_EQ(x.floor, 750U);
    EXPECT_EQ(x.ceil, 750U);
    EXPECT_EQ(x.hi, 788U);  // ceil(1.05 * 750) = ceil(787.5)
    EXPECT_EQ(x.lo, 712U);  // floor(0.95 * 750) = floor(712.5)
  }
}

TEST(PartitionerShares, HeavyItemIsPinnedAtItsMaxAndTheRestShared) {
  const std::vector<uint32_t> w = {100, 1, 1};
  const std::vector<uint64_t> max(3, 10);
  const auto b = share_bounds(w, 21, max, 0);
  EXPECT_EQ(b[0].floor, 10U);
  EXPECT_EQ(b[0].hi, 10U);
  EXPECT_EQ(b[1].floor, 5U);
  EXPECT_EQ(b[1].ceil, 6U);
  EXPECT_EQ(b[2].floor, 5U);
}

}  // namespace
}  // namespace sluice::partitioner::detail
