// Monotonic time as plain integers, for timeouts, deadlines, liveness and rates: one place
// for the casts (wall-clock time, e.g. record timestamps, is std::chrono::system_clock).
#pragma once

#include <chrono>
#include <cstdint>

namespace sluice {

inline int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

inline int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace sluice
