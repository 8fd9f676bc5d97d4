#include "consumer/assignor.h"

#include <gtest/gtest.h>

namespace sluice::consumer {
namespace {

std::vector<TopicPartition> tps(const std::string& t, std::vector<int32_t> ps) {
  std::vector<TopicPartition> out;
  for (int32_t p : ps) out.push_back({t, p});
  return out;
}

TEST(Assignor, RangeGivesContiguousRangesExtrasFirst) {
  Subscriptions subs{{"a", {"t"}}, {"b", {"t"}}, {"c", {"t"}}};
  auto out = assign_range(subs, {{"t", 7}});
  EXPECT_EQ(out["a"], tps("t", {0, 1, 2}));
  EXPECT_EQ(out["b"], tps("t", {3, 4}));
  EXPECT_EQ(out["c"], tps("t", {5, 6}));
}

TEST(Assignor, RangeIsPerTopicAndSkipsUnsubscribed) {
  Subscriptions subs{{"a", {"t", "u"}}, {"b", {"t"}}};
  auto out = assign_range(subs, {{"t", 2}, {"u", 3}});
  std::vector<TopicPartition> a = {{"t", 0}, {"u", 0}, {"u", 1}, {"u", 2}};
  EXPECT_EQ(out["a"], a);
  EXPECT_EQ(out["b"], tps("t", {1}));
}

TEST(Assignor, MoreMembersThanPartitionsLeavesSomeEmpty) {
  Subscriptions subs{{"a", {"t"}}, {"b", {"t"}}, {"c", {"t"}}};
  auto out = assign_range(subs, {{"t", 1}});
  EXPECT_EQ(out["a"], tps("t", {0}));
  EXPECT_TRUE(out["b"].empty());
  EXPECT_TRUE(out.count("c"));
}

TEST(Assignor, RoundRobinInterleaves) {
  Subscriptions subs{{"a", {"t", "u"}}, {"b", {"t", "u"}}};
  auto out = assign_round_robin(subs, {{"t", 3}, {"u", 2}});
  std::vector<TopicPartition> a = {{"t", 0}, {"t", 2}, {"u", 1}};
  std::vector<TopicPartition> b = {{"t", 1}, {"u", 0}};
  EXPECT_EQ(out["a"], a);
  EXPECT_EQ(out["b"], b);
}

TEST(Assignor, RoundRobinSkipsMembersNotSubscribed) {
  Subscriptions subs{{"a", {"t"}}, {"b", {"u"}}};
  auto out = assign_round_robin(subs, {{"t", 2}, {"u", 2}});
  EXPECT_EQ(out["a"], tps("t", {0, 1}));
  EXPECT_EQ(out["b"], tps("u", {0, 1}));
}

TEST(Assignor, UnknownTopicsAssignNothing) {
  Subscriptions subs{{"a", {"missing"}}};
  EXPECT_TRUE(assign_range(subs, {})["a"].empty());
  EXPECT_TRUE(assign_round_robin(subs, {})["a"].empty());
}

// The bytes Kafka's ConsumerProtocol writes for version 0 (kafka-protocol.md 7.6).
TEST(ConsumerProtocol, SubscriptionV0Bytes) {
  auto b = encode_subscription({"ab"});
  std::vector<uint8_t> expect = {0, 0, 0, 0, 0, 1, 0, 2, 'a', 'b', 0xff, 0xff, 0xff, 0xff};
  ASSERT_EQ(b.size(), expect.size());
  for (size_t i = 0; i < b.size(); ++i) EXPECT_EQ(static_cast<uint8_t>(b[i]), expect[i]) << i;
  std::vector<std::string> topics;
  ASSERT_TRUE(decode_subscription(Bytes(b), topics));
  EXPECT_EQ(topics, std::vector<std::string>{"ab"});
}

TEST(ConsumerProtocol, SubscriptionOfLaterVersionsWithTrailingFieldsDecodes) {
  // v1 as librdkafka writes it: topics, user data, owned partitions.
  std::vector<uint8_t> v1 = {0, 1, 0, 0, 0, 2, 0, 1, 'x', 0, 1, 'y', 0, 0, 0, 0,  // user data ""
                             0, 0, 0, 0};                                         // no owned
  std::vector<std::byte> bytes;
  for (auto c : v1) bytes.push_back(std::byte{c});
  std::vector<std::string> topics;
  ASSERT_TRUE(decode_subscription(Bytes(bytes), topics));
  EXPECT_EQ(topics, (std::vector<std::string>{"x", "y"}));
}

TEST(ConsumerProtocol, AssignmentRoundTrip) {
  std::vector<TopicPartition> in = {{"a", 0}, {"a", 3}, {"b", 1}};
  auto bytes = encode_assignment(in);
  std::vector<TopicPartition> out;
  ASSERT_TRUE(decode_assignment(Bytes(bytes), out));
  EXPECT_EQ(out, in);
}

TEST(ConsumerProtocol, EmptyAssignmentBytesMeanNothing) {
  std::vector<TopicPartition> out = {{"x", 1}};
  ASSERT_TRUE(decode_assignment(Bytes(), out));
  EXPECT_TRUE(out.empty());
}

TEST(ConsumerProtocol, TruncatedBytesAreRejected) {
  auto bytes = encode_assignment({{"topic", 1}});
  bytes.resize(bytes.size() - 7);
  std::vector<TopicPartition> out;
  EXPECT_FALSE(decode_assignment(Bytes(bytes), out));
  std::vector<std::string> topics;
  auto sub = encode_subscription({"topic"});
  sub.resize(5);
  EXPECT_FALSE(decode_subscription(Bytes(sub), topics));
}

}  // namespace
}  // namespace sluice::consumer
