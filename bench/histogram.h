// A high-dynamic-range latency histogram in the manner of HdrHistogram: log-linear buckets
// with 2048 sub-buckets per power of two, so every recorded value is kept to 3 significant
// decimal digits (relative error at most 1/1024) from 1 unit up to kValueMax units. Values
// are microseconds here: 1 us to about 71 minutes in ~190 KiB of counters.
//
// Not thread-safe: each thread records into its own histogram and the owner merges them
// (add()). Recording is O(1) with no allocation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace sluice::bench {

class Histogram {
 public:
  static constexpr int kSubBucketHalfMagnitude = 10;                        // 1024
  static constexpr int64_t kSubBucketCount = 2 << kSubBucketHalfMagnitude;  // 2048
  static constexpr int64_t kSubBucketHalfCount = kSubBucketCount / 2;
  static constexpr int64_t kValueMax = (int64_t{1} << 32) - 1;  // ~71.6 minutes in microseconds
  // Bucket b (b >= 1) holds [2^(b+10), 2^(b+11)) in 1024 steps of 2^b; bucket 0 holds [0, 2048).
  static constexpr int kBucketCount = 22;
  static_assert((kSubBucketCount << (kBucketCount - 1)) == kValueMax + 1);

  Histogram();

  // Records `count` occurrences of `value`; negative values count as 0, values above
  // kValueMax count as kValueMax (and are tallied in saturated()).
  void record(int64_t value, int64_t count = 1);
  void add(const Histogram& other);
  void reset();

  int64_t count() const { return total_; }
  int64_t min() const { return total_ ? min_ : 0; }
  int64_t max() const { return max_; }  // exact, not bucketed
  int64_t saturated() const { return saturated_; }
  double mean() const;

  // The smallest recorded value v (to within the bucket's width) such that at least
  // `percentile`% of the recorded values are <= v, as HdrHistogram reports it: the highest
  // value equivalent to that bucket, capped by max(). 0 when empty. 100 gives max().
  int64_t value_at_percentile(double percentile) const;

  // Values equivalent to `value` (in the same bucket) span [lowest, highest].
  static int64_t lowest_equivalent(int64_t value);
  static int64_t highest_equivalent(int64_t value);

 private:
  static size_t index_of(int64_t value);
  static int64_t value_of(size_t index);

  std::vector<int64_t> counts_;
  int64_t total_ = 0;
  int64_t min_ = INT64_MAX;
  int64_t max_ = 0;
  int64_t saturated_ = 0;
  double sum_ = 0;
  size_t index_max_ = 0;  // counts_ above this are zero (keeps reset() and scans short)
};

}  // namespace sluice::bench
