#include "partitioner/key_partitioner.h"

#include <gtest/gtest.h>

#include <array>

namespace sluice::partitioner {
namespace {

// Vectors from docs/kafka-protocol.md sections 9 and 12 (librdkafka's unit test values, which
// match the Java client's Utils.murmur2).
TEST(KeyPartitioner, Murmur2MatchesKafkaVectors) {
  EXPECT_EQ(murmur2("kafka"), 0xd067cf64U);
  EXPECT_EQ(murmur2("giberish123456789"), 0x8f552b0cU);
  EXPECT_EQ(murmur2("1234"), 0x9fc97b14U);
  EXPECT_EQ(murmur2(""), 0x106e08d9U);
}

// The Java client's own vectors: Kafka's UtilsTest.testMurmur2
// (clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java), as signed ints.
TEST(KeyPartitioner, Murmur2MatchesJavaClientUtilsTest) {
  const auto java = [](std::string_view key) { return static_cast<int32_t>(murmur2(key)); };
  EXPECT_EQ(java("21"), -973932308);
  EXPECT_EQ(java("foobar"), -790332482);
  EXPECT_EQ(java("a-little-bit-long-string"), -985981536);
  EXPECT_EQ(java("a-little-bit-longer-string"), -1486304829);
  EXPECT_EQ(java("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"), -58897971);
  EXPECT_EQ(java("abc"), 479470107);
}

TEST(KeyPartitioner, PartitionForKeyMatchesKafkaVectors) {
  EXPECT_EQ(partition_for_key("kafka", 3), 1);
  EXPECT_EQ(partition_for_key("", 3), 0);
  EXPECT_EQ(partition_for_key("kafka", 6), 4);
}

// toPositive masks the sign bit; abs() would give a different partition for these.
TEST(KeyPartitioner, ToPositiveMasksRatherThanNegates) {
  EXPECT_EQ(to_positive(0xd067cf64U), 0x5067cf64);
  EXPECT_EQ(to_positive(0x80000000U), 0);
  EXPECT_EQ(to_positive(0xffffffffU), 0x7fffffff);
  EXPECT_EQ(to_positive(0x7fffffffU), 0x7fffffff);
}

// Bytes are unsigned (Java masks each byte with 0xff): a key with high bytes must hash the
// same whether read as bytes or chars, and tails of every length take their own path.
TEST(KeyPartitioner, HighBytesAndEveryTailLengthAreConsistent) {
  const std::array<std::byte, 7> raw = {std::byte{0xff}, std::byte{0x80}, std::byte{0x01},
                                        std::byte{0xfe}, std::byte{0x7f}, std::byte{0x00},
                                        std::byte{0xc3}};
  const std::string_view chars(reinterpret_cast<const char*>(raw.data()), raw.size());
  EXPECT_EQ(murmur2(std::span<const std::byte>(raw)), murmur2(chars));
  // Each prefix length 0..7 gives a distinct hash (tail cases 0, 1, 2, 3 all taken).
  std::array<uint32_t, 8> hashes{};
  for (size_t n = 0; n <= raw.size(); ++n) hashes[n] = murmur2(std::span(raw.data(), n));
  for (size_t i = 0; i < hashes.size(); ++i) {
    for (size_t j = i + 1; j < hashes.size(); ++j) EXPECT_NE(hashes[i], hashes[j]);
  }
}

TEST(KeyPartitioner, PartitionIsAlwaysInRange) {
  for (int32_t n = 1; n <= 50; ++n) {
    for (int k = 0; k < 200; ++k) {
      const int32_t p = partition_for_key("key-" + std::to_string(k), n);
      ASSERT_GE(p, 0);
      ASSERT_LT(p, n);
    }
  }
}

}  // namespace
}  // namespace sluice::partitioner
