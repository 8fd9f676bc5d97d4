#include "common/random.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>

namespace sluice {

uint64_t random_u64() {
  thread_local std::mt19937_64 engine{[] {
    std::random_device rd;
    return (static_cast<uint64_t>(rd()) << 32) ^ rd() ^
           static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  }()};
  return engine();
}

std::string random_id(size_t n) {
  std::string out(n, '\0');
  for (size_t i = 0; i < n; i += 8) {
    const uint64_t r = random_u64();
    std::memcpy(out.data() + i, &r, std::min<size_t>(8, n - i));
  }
  return out;
}

}  // namespace sluice
