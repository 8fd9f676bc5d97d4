#include "protocol/crc32c.h"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <cpuid.h>
#include <nmmintrin.h>
#endif

namespace sluice::kafka {
namespace {

constexpr uint32_t kPoly = 0x82F63B78;

constexpr std::array<std::array<uint32_t, 256>, 8> make_tables() {
  std::array<std::array<uint32_t, 256>, 8> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ ((c & 1) ? kPoly : 0);
    t[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; ++i) {
    for (size_t s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xff];
  }
  return t;
}
constexpr auto kTables = make_tables();

#if defined(__x86_64__)
// The crc32 instruction takes 3 cycles but can start one every cycle: three independent
// streams over three adjacent blocks keep it busy, and the three CRCs are then joined with
// "append N zero bytes" operators (Mark Adler's crc32c.c, zlib's crc32_combine). CRC is
// linear: crc(A || B) = shift(crc(A), |B|) ^ crc_from_zero(B).
constexpr size_t kLong = 8192;  // block of the long loop (3 blocks per round)
constexpr size_t kShort = 256;  // block of the short loop

uint32_t gf2_times(const uint32_t* mat, uint32_t vec) {
  uint32_t sum = 0;
  for (; vec != 0; vec >>= 1, ++mat) {
    if (vec & 1) sum ^= *mat;
  }
  return sum;
}

void gf2_square(uint32_t* square, const uint32_t* mat) {
  for (int n = 0; n < 32; ++n) square[n] = gf2_times(mat, mat[n]);
}

// The operator that appends `len` zero bytes (a power of two) to a CRC register.
void zeros_operator(uint32_t* even, size_t len) {
  uint32_t odd[32];
  odd[0] = kPoly;  // one zero bit
  for (uint32_t n = 1, row = 1; n < 32; ++n, row <<= 1) odd[n] = row;
  gf2_square(even, odd);  // two zero bits
  gf2_square(odd, even);  // four
  for (;;) {              // then one zero byte in even, two in odd, and so on
    gf2_square(even, odd);
    len >>= 1;
    if (len == 0) return;
    gf2_square(odd, even);
    len >>= 1;
    if (len == 0) break;
  }
  std::memcpy(even, odd, sizeof odd);
}

struct ShiftTable {  // the operator applied a byte at a time
  uint32_t t[4][256];
  explicit ShiftTable(size_t len) {
    uint32_t op[32];
    zeros_operator(op, len);
    for (uint32_t n = 0; n < 256; ++n) {
      for (int k = 0; k < 4; ++k) t[k][n] = gf2_times(op, n << (8 * k));
    }
  }
  uint32_t shift(uint32_t crc) const {
    return t[0][crc & 0xff] ^ t[1][(crc >> 8) & 0xff] ^ t[2][(crc >> 16) & 0xff] ^
           t[3][crc >> 24];
  }
};

__attribute__((target("sse4.2"))) inline uint64_t crc_word(uint64_t crc, const unsigned char* p) {
  uint64_t word;
  std::memcpy(&word, p, 8);
  return _mm_crc32_u64(crc, word);
}

// One stream: a word at a time, then the bytes left.
__attribute__((target("sse4.2"))) uint64_t crc_one_stream(uint64_t c, const unsigned char* p,
                                                           size_t n) {
  for (; n >= 8; p += 8, n -= 8) c = crc_word(c, p);
  for (; n > 0; --n) c = _mm_crc32_u8(static_cast<uint32_t>(c), *p++);
  return c;
}

// Three streams over blocks of `block` bytes while at least three remain.
__attribute__((target("sse4.2"))) uint64_t crc_triples(uint64_t c0, const unsigned char*& p,
                                                        size_t& n, size_t block,
                                                        const ShiftTable& shift) {
  while (n >= 3 * block) {
    uint64_t c1 = 0, c2 = 0;
    const unsigned char* end = p + block;
    do {
      c0 = crc_word(c0, p);
      c1 = crc_word(c1, p + block);
      c2 = crc_word(c2, p + 2 * block);
      p += 8;
    } while (p < end);
    c0 = shift.shift(static_cast<uint32_t>(c0)) ^ static_cast<uint32_t>(c1);
    c0 = shift.shift(static_cast<uint32_t>(c0)) ^ static_cast<uint32_t>(c2);
    p += 2 * block;
    n -= 3 * block;
  }
  return c0;
}

__attribute__((target("sse4.2"))) uint32_t crc32c_sse42(Bytes data, uint32_t crc) {
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  size_t n = data.size();
  uint64_t c = ~crc;
  if (n >= 3 * kShort) {
    static const ShiftTable long_shift(kLong), short_shift(kShort);
    while ((reinterpret_cast<uintptr_t>(p) & 7) != 0) {
      c = _mm_crc32_u8(static_cast<uint32_t>(c), *p++);
      --n;
    }
    c = crc_triples(c, p, n, kLong, long_shift);
    c = crc_triples(c, p, n, kShort, short_shift);
  }
  return ~static_cast<uint32_t>(crc_one_stream(c, p, n));
}

// The single-stream loop it replaced, kept as the benchmark's baseline for the hardware path.
__attribute__((target("sse4.2"))) uint32_t crc32c_sse42_one_stream(Bytes data, uint32_t crc) {
  return ~static_cast<uint32_t>(crc_one_stream(
      ~crc, reinterpret_cast<const unsigned char*>(data.data()), data.size()));
}

bool cpu_has_sse42() {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  return (c & bit_SSE4_2) != 0;
}
#endif

}  // namespace

namespace detail {

uint32_t crc32c_bytewise(Bytes data, uint32_t crc) {
  uint32_t c = ~crc;
  for (std::byte b : data) c = (c >> 8) ^ kTables[0][(c ^ static_cast<uint8_t>(b)) & 0xff];
  return ~c;
}

uint32_t crc32c_software(Bytes data, uint32_t crc) {
  const auto* p = reinterpret_cast<const uint8_t*>(data.data());
  size_t n = data.size();
  uint32_t c = ~crc;
  while (n >= 8) {
    uint32_t lo, hi;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + 4, 4);
    lo ^= c;  // little-endian load: byte 0 is the low byte
    c = kTables[7][lo & 0xff] ^ kTables[6][(lo >> 8) & 0xff] ^ kTables[5][(lo >> 16) & 0xff] ^
        kTables[4][lo >> 24] ^ kTables[3][hi & 0xff] ^ kTables[2][(hi >> 8) & 0xff] ^
        kTables[1][(hi >> 16) & 0xff] ^ kTables[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n-- > 0) c = (c >> 8) ^ kTables[0][(c ^ *p++) & 0xff];
  return ~c;
}
static_assert(std::endian::native == std::endian::little, "slice-by-8 assumes little-endian");

uint32_t crc32c_one_stream(Bytes data, uint32_t crc) {
#if defined(__x86_64__)
  if (crc32c_hardware()) return crc32c_sse42_one_stream(data, crc);
#endif
  return crc32c_software(data, crc);
}

}  // namespace detail

bool crc32c_hardware() {
#if defined(__x86_64__)
  static const bool has = cpu_has_sse42();
  return has;
#else
  return false;
#endif
}

uint32_t crc32c(Bytes data, uint32_t crc) {
#if defined(__x86_64__)
  if (crc32c_hardware()) return crc32c_sse42(data, crc);
#endif
  return detail::crc32c_software(data, crc);
}

}  // namespace sluice::kafka
