// Intended send times for a fixed-rate run. The k-th operation is due at start + k / rate,
// computed from k (never by adding periods), so rounding never drifts. When the sender falls
// behind, the next times are already in the past and it sends at once until it catches up:
// nothing is skipped, and because latency is measured from the intended time (not the actual
// send time) a stall shows up in the latency of every operation it delayed. That is the
// correction for coordinated omission (a sender that waited politely for a slow server would
// otherwise never measure the requests it did not send).
//
// Rate 0 means "as fast as possible": next() returns `now` as given.
// Not thread-safe: one limiter per sending thread; give each thread rate/threads and a phase.
#pragma once

#include <cstdint>

#include "common/assert.h"

namespace sluice::bench {

class RateLimiter {
 public:
  // `rate_per_s` operations per second starting at `start_ns` (any monotonic clock in ns).
  RateLimiter(double rate_per_s, int64_t start_ns) : rate_per_s_(rate_per_s), start_ns_(start_ns) {
    SLUICE_ASSERT(rate_per_s >= 0);
  }

  bool unlimited() const { return rate_per_s_ == 0; }
  double rate_per_s() const { return rate_per_s_; }

  // The intended time of the next operation; `now_ns` is used only when unlimited.
  int64_t next(int64_t now_ns) {
    if (unlimited()) {
      ++issued_;
      return now_ns;
    }
    const int64_t at = intended(issued_++);
    SLUICE_DASSERT(at >= start_ns_);
    return at;
  }
  // The intended time of operation k (0-based).
  int64_t intended(int64_t k) const {
    SLUICE_ASSERT(!unlimited());
    return start_ns_ + static_cast<int64_t>(static_cast<double>(k) * 1e9 / rate_per_s_);
  }
  int64_t issued() const { return issued_; }

 private:
  double rate_per_s_;
  int64_t start_ns_;
  int64_t issued_ = 0;
};

}  // namespace sluice::bench
