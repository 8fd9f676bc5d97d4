#include "protocol/crc32c.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace sluice::kafka {
namespace {

TEST(Crc32c, CheckValue) {
  EXPECT_EQ(crc32c(as_bytes("123456789")), 0xE3069283u);
  EXPECT_EQ(detail::crc32c_bytewise(as_bytes("123456789")), 0xE3069283u);
  EXPECT_EQ(detail::crc32c_software(as_bytes("123456789")), 0xE3069283u);
  EXPECT_EQ(crc32c(Bytes{}), 0u);
}

TEST(Crc32c, ImplementationsAgreeOnRandomDataAtEveryAlignment) {
  std::mt19937_64 rng(42);
  std::vector<std::byte> data(4096 + 16);
  for (auto& b : data) b = static_cast<std::byte>(rng());
  for (size_t start = 0; start < 16; ++start) {
    for (size_t len : {0, 1, 7, 8, 9, 63, 64, 65, 1000, 4096}) {
      Bytes span(data.data() + start, len);
      const uint32_t ref = detail::crc32c_bytewise(span);
      EXPECT_EQ(crc32c(span), ref) << start << " " << len;
      EXPECT_EQ(detail::crc32c_software(span), ref) << start << " " << len;
    }
  }
}

TEST(Crc32c, InterleavedStreamsAgreeOnLongBuffers) {
  // Lengths around the three-stream rounds (3 x 256 and 3 x 8192 bytes) and beyond.
  std::mt19937_64 rng(7);
  std::vector<std::byte> data(200000);
  for (auto& b : data) b = static_cast<std::byte>(rng());
  for (size_t len : {767, 768, 769, 1535, 1536, 24575, 24576, 24577, 49152 + 768 + 13, 199990}) {
    for (size_t start : {0, 3, 8}) {
      Bytes span(data.data() + start, len);
      const uint32_t ref = detail::crc32c_software(span);
      EXPECT_EQ(crc32c(span), ref) << start << " " << len;
      EXPECT_EQ(detail::crc32c_one_stream(span), ref) << start << " " << len;
      EXPECT_EQ(crc32c(span.subspan(len / 3), crc32c(span.first(len / 3))), ref);
    }
  }
  for (int i = 0; i < 200; ++i) {
    const size_t start = rng() % 64, len = rng() % (data.size() - 64);
    Bytes span(data.data() + start, len);
    EXPECT_EQ(crc32c(span), detail::crc32c_software(span)) << start << " " << len;
  }
}

TEST(Crc32c, ContinuesAcrossCalls) {
  const auto all = as_bytes("hello, record batch");
  const uint32_t whole = crc32c(all);
  for (size_t cut = 0; cut <= all.size(); ++cut) {
    EXPECT_EQ(crc32c(all.subspan(cut), crc32c(all.first(cut))), whole);
  }
}

}  // namespace
}  // namespace sluice::kafka
