#include "protocol/compression.h"

#include <gtest/gtest.h>

#include <random>

namespace sluice::kafka {
namespace {

std::vector<std::byte> sample(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::byte> v(n);
  // Compressible: runs of repeated bytes with some noise.
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((i / 13) % 7 + (rng() % 4 == 0));
  return v;
}

class CodecTest : public ::testing::TestWithParam<Compression> {};

TEST_P(CodecTest, RoundTripsSizes) {
  for (size_t n : {size_t{0}, size_t{1}, size_t{100}, size_t{70000}, size_t{300000}}) {
    auto in = sample(n, n);
    std::vector<std::byte> packed;
    ASSERT_TRUE(compress(GetParam(), in, packed));
    std::vector<std::byte> out;
    auto r = decompress(GetParam(), packed, out, n + 1);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(out, in);
  }
}

TEST_P(CodecTest, RefusesOutputOverTheLimit) {
  if (GetParam() == Compression::kNone) GTEST_SKIP();
  auto in = sample(200000, 1);
  std::vector<std::byte> packed;
  ASSERT_TRUE(compress(GetParam(), in, packed));
  std::vector<std::byte> out;
  EXPECT_FALSE(decompress(GetParam(), packed, out, 1000));
  EXPECT_LE(out.size(), 1000u + 64 * 1024);
}

TEST_P(CodecTest, RejectsTruncatedAndGarbledInput) {
  if (GetParam() == Compression::kNone) GTEST_SKIP();
  auto in = sample(50000, 2);
  std::vector<std::byte> packed;
  ASSERT_TRUE(compress(GetParam(), in, packed));
  std::vector<std::byte> out;
  EXPECT_FALSE(decompress(GetParam(), Bytes(packed).first(packed.size() / 2), out, 1 << 20));
  std::vector<std::byte> garbage(packed.size(), std::byte{0x5a});
  out.clear();
  EXPECT_FALSE(decompress(GetParam(), garbage, out, 1 << 20));
}

INSTANTIATE_TEST_SUITE_P(AllCodecs, CodecTest,
                         ::testing::Values(Compression::kNone, Compression::kGzip,
                                           Compression::kSnappy, Compression::kLz4,
                                           Compression::kZstd),
                         [](const auto& info) {
                           return std::string(compression_name(info.param));
                         });

TEST(Compression, NamesParse) {
  EXPECT_EQ(*parse_compression("zstd"), Compression::kZstd);
  EXPECT_FALSE(parse_compression("brotli"));
}

}  // namespace
}  // namespace sluice::kafka
