#include "broker/legacy.h"

#include <gtest/gtest.h>

#include <thread>

#include "protocol/legacy_messages.h"

namespace sluice::broker {
namespace {

TEST(RateLimitedWarning, OneLinePerKeyPerInterval) {
  RateLimitedWarning w(std::chrono::milliseconds(200));
  EXPECT_TRUE(w.warn("a", "first"));
  for (int i = 0; i < 50; ++i) EXPECT_FALSE(w.warn("a", "again"));
  EXPECT_TRUE(w.warn("b", "another client"));
  std::this_thread::sleep_for(std::chrono::milliseconds(250));
  EXPECT_TRUE(w.warn("a", "after the interval"));  // logged with "50 more like it"
  EXPECT_FALSE(w.warn("a", "again"));
}

TEST(RateLimitedWarning, ForgetsKeysBeyondItsBound) {
  RateLimitedWarning w(std::chrono::hours(1));
  for (size_t i = 0; i < RateLimitedWarning::kKeysMax + 10; ++i) {
    EXPECT_TRUE(w.warn("client-" + std::to_string(i), "x"));
  }
  // The table was cleared when full (every key recent): an old key logs again.
  EXPECT_TRUE(w.warn("client-0", "x"));
}

TEST(Legacy, ClientKeyIgnoresThePort) {
  ConnectionInfo a{1, "127.0.0.1:5000", 0}, b{2, "127.0.0.1:6000", 1};
  EXPECT_EQ(client_key(a, "kafka-go"), client_key(b, "kafka-go"));
  EXPECT_NE(client_key(a, "kafka-go"), client_key(a, "sarama"));
}

TEST(Legacy, FetchVersionsAndTheirFormats) {
  EXPECT_EQ(fetch_magic(0), kafka::kMagicV0);
  EXPECT_EQ(fetch_magic(1), kafka::kMagicV0);
  EXPECT_EQ(fetch_magic(2), kafka::kMagicV1);
  EXPECT_EQ(fetch_magic(3), kafka::kMagicV1);
  EXPECT_EQ(fetch_magic(4), -1);
  EXPECT_EQ(legacy_partition_bytes_max(1), kLegacyFetchBytesMax);
  EXPECT_EQ(legacy_partition_bytes_max(100000), kLegacyFetchPartitionBytesMin);
}

TEST(Legacy, ProduceErrorsByKind) {
  std::deque<std::vector<std::byte>> store;
  std::vector<std::byte>* converted = nullptr;
  std::string why;
  std::vector<std::byte> set;
  kafka::append_legacy_message(set, kafka::kMagicV1, 0, 0, 1, std::nullopt,
                               as_bytes(std::string_view("v")));
  EXPECT_EQ(up_convert_produce(kafka::Records::borrowed(set), store, converted, why),
            kafka::ErrorCode::kNone);
  ASSERT_NE(converted, nullptr);
  EXPECT_EQ(kafka::magic_at(*converted), 2);
  auto bad = set;
  bad.back() ^= std::byte{1};
  EXPECT_EQ(up_convert_produce(kafka::Records::borrowed(bad), store, converted, why),
            kafka::ErrorCode::kCorruptMessage);
  EXPECT_NE(why.find("CRC"), std::string::npos) << why;
  EXPECT_EQ(up_convert_produce(kafka::Records(), store, converted, why),
            kafka::ErrorCode::kInvalidRecord);
  auto v2 = set;
  v2[16] = std::byte{2};
  EXPECT_EQ(up_convert_produce(kafka::Records::borrowed(v2), store, converted, why),
            kafka::ErrorCode::kInvalidRecord);
}

}  // namespace
}  // namespace sluice::broker
