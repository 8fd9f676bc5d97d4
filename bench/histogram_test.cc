#include "bench/histogram.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace sluice::bench {
namespace {

constexpr double kPercentiles[] = {0, 1, 10, 25, 50, 75, 90, 99, 99.9, 99.99, 99.999, 100};

// The reference percentile: the smallest sample with at least p% of the samples at or below it.
int64_t reference(const std::vector<int64_t>& sorted, double p) {
  const auto n = static_cast<double>(sorted.size());
  const auto rank = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(p / 100.0 * n - 1e-9)));
  return sorted[static_cast<size_t>(rank - 1)];
}

// Latency-like data: a body around 1 ms, a long tail up to a minute, a few tiny values.
std::vector<int64_t> samples(uint64_t seed, size_t n) {
  std::mt19937_64 rng(seed);
  std::lognormal_distribution<double> body(std::log(1000.0), 0.6);
  std::uniform_real_distribution<double> exponent(0, std::log10(60e6));
  std::vector<int64_t> out;
  for (size_t i = 0; i < n; ++i) {
    const uint64_t pick = rng() % 100;
    double v = pick < 90 ? body(rng) : pick < 98 ? std::pow(10.0, exponent(rng)) : rng() % 50;
    out.push_back(static_cast<int64_t>(v));
  }
  return out;
}

void expect_within_bound(const Histogram& h, std::vector<int64_t> values) {
  std::sort(values.begin(), values.end());
  for (double p : kPercentiles) {
    const int64_t want = reference(values, p);
    const int64_t got = h.value_at_percentile(p);
    // The reported value is the top of the reference value's bucket, whose width is at most
    // value / 1024 (3 significant digits), and never above the true maximum.
    EXPECT_GE(got, want) << "p" << p;
    EXPECT_LE(got - want, want / 1024) << "p" << p << " want " << want << " got " << got;
  }
  EXPECT_EQ(h.max(), values.back());
  EXPECT_EQ(h.min(), values.front());
  EXPECT_EQ(h.count(), static_cast<int64_t>(values.size()));
}

TEST(Histogram, PercentilesMatchSortedReferenceOnRandomData) {
  for (uint64_t seed : {1, 2, 3, 4, 5}) {
    SCOPED_TRACE(seed);
    const auto values = samples(seed, 200'000);
    Histogram h;
    for (int64_t v : values) h.record(v);
    expect_within_bound(h, values);
  }
}

TEST(Histogram, SmallSampleCountsMatchReference) {
  std::mt19937_64 rng(7);
  for (size_t n : {1, 2, 3, 10, 99, 1000}) {
    SCOPED_TRACE(n);
    std::vector<int64_t> values;
    for (size_t i = 0; i < n; ++i) values.push_back(static_cast<int64_t>(rng() % 10'000'000));
    Histogram h;
    for (int64_t v : values) h.record(v);
    expect_within_bound(h, values);
  }
}

TEST(Histogram, ValuesBelow2048AreExact) {
  Histogram h;
  for (int64_t v = 0; v < 2048; ++v) h.record(v);
  EXPECT_EQ(h.value_at_percentile(50), 1023);
  EXPECT_EQ(h.value_at_percentile(100), 2047);
  for (int64_t v = 0; v < 2048; ++v) {
    EXPECT_EQ(Histogram::lowest_equivalent(v), v);
    EXPECT_EQ(Histogram::highest_equivalent(v), v);
  }
}

TEST(Histogram, EquivalentRangesContainTheValueAndAreNarrow) {
  std::mt19937_64 rng(11);
  for (int i = 0; i < 100'000; ++i) {
    const int64_t v = static_cast<int64_t>(rng() % static_cast<uint64_t>(Histogram::kValueMax));
    const int64_t lo = Histogram::lowest_equivalent(v);
    const int64_t hi = Histogram::highest_equivalent(v);
    ASSERT_LE(lo, v);
    ASSERT_GE(hi, v);
    ASSERT_LE(hi - lo, std::max<int64_t>(0, v / 1024)) << v;
  }
  EXPECT_EQ(Histogram::highest_equivalent(Histogram::kValueMax), Histogram::kValueMax);
}

TEST(Histogram, MergedThreadHistogramsEqualOneHistogram) {
  const auto values = samples(21, 100'000);
  Histogram whole;
  Histogram parts[4];
  for (size_t i = 0; i < values.size(); ++i) {
    whole.record(values[i]);
    parts[i % 4].record(values[i]);
  }
  Histogram merged;
  for (const Histogram& p : parts) merged.add(p);
  for (double p : kPercentiles)
    EXPECT_EQ(merged.value_at_percentile(p), whole.value_at_percentile(p));
  EXPECT_EQ(merged.count(), whole.count());
  EXPECT_EQ(merged.max(), whole.max());
  EXPECT_EQ(merged.min(), whole.min());
  EXPECT_DOUBLE_EQ(merged.mean(), whole.mean());
}

TEST(Histogram, ValuesAboveTheRangeSaturate) {
  Histogram h;
  h.record(5);
  h.record(Histogram::kValueMax + 1000, 3);
  h.record(-7);  // a clock step backwards counts as 0
  EXPECT_EQ(h.saturated(), 3);
  EXPECT_EQ(h.max(), Histogram::kValueMax);
  EXPECT_EQ(h.min(), 0);
  EXPECT_EQ(h.count(), 5);
  EXPECT_EQ(h.value_at_percentile(100), Histogram::kValueMax);
  EXPECT_EQ(h.value_at_percentile(20), 0);
}

TEST(Histogram, ResetEmptiesAndCountsAreWeighted) {
  Histogram h;
  EXPECT_EQ(h.value_at_percentile(99), 0);
  h.record(100, 99);
  h.record(1'000'000, 1);
  EXPECT_EQ(h.value_at_percentile(99), 100);
  EXPECT_EQ(h.value_at_percentile(99.5), 1'000'000);  // the bucket's top, capped by the max
  h.reset();
  EXPECT_EQ(h.count(), 0);
  EXPECT_EQ(h.max(), 0);
  EXPECT_EQ(h.value_at_percentile(50), 0);
  h.record(3);
  EXPECT_EQ(h.value_at_percentile(50), 3);
}

}  // namespace
}  // namespace sluice::bench
