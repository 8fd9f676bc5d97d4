// A fixed-bucket latency histogram for metrics (Prometheus' cumulative buckets are computed
// when it is read). Not thread-safe: each one belongs to one thread (a shard), and a scrape
// reads it on that thread and sums the copies of every shard.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace sluice {

class LatencyHistogram {
 public:
  // Upper bounds of the buckets in microseconds; a last, implicit bucket holds the rest (+Inf).
  static constexpr std::array<uint64_t, 15> kBoundsUs = {
      100,    250,     500,     1'000,   2'500,     5'000,     10'000,    25'000,
      50'000, 100'000, 250'000, 500'000, 1'000'000, 2'500'000, 10'000'000};
  static constexpr size_t kBuckets = kBoundsUs.size() + 1;

  void record(std::chrono::nanoseconds elapsed) {
    const auto ns = static_cast<uint64_t>(elapsed.count() < 0 ? 0 : elapsed.count());
    const uint64_t us = ns / 1000;
    size_t i = 0;
    while (i < kBoundsUs.size() && us > kBoundsUs[i]) ++i;
    ++counts_[i];
    ++count_;
    sum_ns_ += ns;
  }
  void add(const LatencyHistogram& other) {
    for (size_t i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
    count_ += other.count_;
    sum_ns_ += other.sum_ns_;
  }
  uint64_t count() const { return count_; }
  uint64_t sum_ns() const { return sum_ns_; }
  // Observations in bucket i alone (not cumulative); i == kBuckets - 1 is the +Inf bucket.
  uint64_t bucket(size_t i) const { return counts_[i]; }

 private:
  std::array<uint64_t, kBuckets> counts_{};
  uint64_t count_ = 0;
  uint64_t sum_ns_ = 0;
};

}  // namespace sluice
