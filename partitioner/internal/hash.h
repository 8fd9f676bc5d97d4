// The fixed hashes placement is built on. They are specified bit for bit here (not std::hash,
// whose values differ between standard libraries), so a placement is the same on every machine.
#pragma once

#include <bit>
#include <cstdint>
#include <string_view>

#include "common/assert.h"

namespace sluice::partitioner::detail {

// FNV-1a, 64-bit (offset basis 0xcbf29ce484222325, prime 0x100000001b3), continuing from `h`.
constexpr uint64_t kFnvOffsetBasis = 0xcbf29ce484222325ULL;
constexpr uint64_t fnv1a64(std::string_view bytes, uint64_t h = kFnvOffsetBasis) {
  for (const char c : bytes) {
    h ^= static_cast<uint8_t>(c);
    h *= 0x100000001b3ULL;
  }
  return h;
}

// MurmurHash3's 64-bit finalizer: a bijection with full avalanche. FNV alone mixes its last
// bytes poorly; every hash used for ranking goes through this.
constexpr uint64_t fmix64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  k ^= k >> 33;
  return k;
}

// log2(x) in fixed point with 32 fractional bits, for 1 <= x < 2^54, in integer arithmetic
// only (std::log may differ in the last bit between C libraries, and one bit can flip a
// ranking). Uses the top 32 significant bits of x and the square-and-compare digit method;
// the result is within 2^-30 of the true value and never decreases as x grows.
constexpr uint64_t log2_fixed32(uint64_t x) {
  SLUICE_ASSERT(x >= 1);
  SLUICE_ASSERT(x < (uint64_t{1} << 54));
  const int n = 63 - std::countl_zero(x);
  uint64_t y = n >= 31 ? x >> (n - 31) : x << (31 - n);  // [2^31, 2^32) = [1, 2) in Q31
  uint64_t fraction = 0;
  for (int i = 0; i < 32; ++i) {
    y = (y * y) >> 31;  // y < 2^32, so y * y < 2^64
    fraction <<= 1;
    if (y >= (uint64_t{1} << 32)) {
      y >>= 1;
      fraction |= 1;
    }
  }
  return (static_cast<uint64_t>(n) << 32) | fraction;
}

}  // namespace sluice::partitioner::detail
