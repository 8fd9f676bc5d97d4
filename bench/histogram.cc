#include "bench/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

#include "common/assert.h"

namespace sluice::bench {

namespace {
constexpr size_t kCountsSize =
    static_cast<size_t>((Histogram::kBucketCount + 1) * Histogram::kSubBucketHalfCount);

// Bucket of a value: 0 below 2048, else floor(log2(value)) - 10.
int bucket_of(int64_t value) {
  const uint64_t v = static_cast<uint64_t>(value) | (Histogram::kSubBucketCount - 1);
  return 63 - std::countl_zero(v) - Histogram::kSubBucketHalfMagnitude;
}
}  // namespace

Histogram::Histogram() : counts_(kCountsSize, 0) {}

size_t Histogram::index_of(int64_t value) {
  SLUICE_DASSERT(value >= 0 && value <= kValueMax);
  const int bucket = bucket_of(value);
  const int64_t sub = value >> bucket;  // in [1024, 2048) for bucket >= 1, [0, 2048) for 0
  const size_t index = static_cast<size_t>((int64_t{bucket} << kSubBucketHalfMagnitude) + sub);
  SLUICE_DASSERT(index < kCountsSize);
  return index;
}

int64_t Histogram::value_of(size_t index) {
  int64_t bucket = static_cast<int64_t>(index >> kSubBucketHalfMagnitude) - 1;
  int64_t sub = static_cast<int64_t>(index & (kSubBucketHalfCount - 1)) + kSubBucketHalfCount;
  if (bucket < 0) {
    sub -= kSubBucketHalfCount;
    bucket = 0;
  }
  return sub << bucket;
}

int64_t Histogram::lowest_equivalent(int64_t value) {
  value = std::clamp<int64_t>(value, 0, kValueMax);
  return value_of(index_of(value));
}

int64_t Histogram::highest_equivalent(int64_t value) {
  value = std::clamp<int64_t>(value, 0, kValueMax);
  return lowest_equivalent(value) + (int64_t{1} << bucket_of(value)) - 1;
}

void Histogram::record(int64_t value, int64_t count) {
  SLUICE_ASSERT(count >= 0);
  if (count == 0) return;
  value = std::max<int64_t>(value, 0);
  if (value > kValueMax) {
    saturated_ += count;
    value = kValueMax;
  }
  const size_t index = index_of(value);
  counts_[index] += count;
  index_max_ = std::max(index_max_, index);
  total_ += count;
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
  sum_ += static_cast<double>(value) * static_cast<double>(count);
}

void Histogram::add(const Histogram& other) {
  if (other.total_ == 0) return;
  for (size_t i = 0; i <= other.index_max_; ++i) counts_[i] += other.counts_[i];
  index_max_ = std::max(index_max_, other.index_max_);
  total_ += other.total_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  saturated_ += other.saturated_;
  sum_ += other.sum_;
}

void Histogram::reset() {
  std::fill(counts_.begin(), counts_.begin() + static_cast<ptrdiff_t>(index_max_ + 1), 0);
  index_max_ = 0;
  total_ = 0;
  min_ = INT64_MAX;
  max_ = 0;
  saturated_ = 0;
  sum_ = 0;
}

double Histogram::mean() const { return total_ ? sum_ / static_cast<double>(total_) : 0.0; }

int64_t Histogram::value_at_percentile(double percentile) const {
  if (total_ == 0) return 0;
  percentile = std::clamp(percentile, 0.0, 100.0);
  // The rank of the wanted value among the sorted samples, 1-based, at least 1.
  const auto rank = std::max<int64_t>(
      1, static_cast<int64_t>(std::ceil(percentile / 100.0 * static_cast<double>(total_) - 1e-9)));
  int64_t seen = 0;
  for (size_t i = 0; i <= index_max_; ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::min(highest_equivalent(value_of(i)), max_);
  }
  SLUICE_ASSERT(false && "counts do not add up to total");
  return max_;
}

}  // namespace sluice::bench
