// Client-side partition assignors of the classic "consumer" group protocol and the bytes of
// its member metadata (subscription) and assignment (kafka-protocol.md 7.6). Pure functions,
// shared by the group leader code and its tests.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/bytes.h"
#include "consumer/consumer.h"

namespace sluice::consumer {

// member id -> subscribed topics
using Subscriptions = std::map<std::string, std::vector<std::string>>;
// member id -> assigned partitions (every member has an entry, maybe empty)
using Assignment = std::map<std::string, std::vector<TopicPartition>>;

// Kafka's RangeAssignor: per topic, members subscribed to it in member-id order each get a
// contiguous range; the first (partitions % members) get one more.
Assignment assign_range(const Subscriptions& subs,
                        const std::map<std::string, int32_t>& partitions);
// Kafka's RoundRobinAssignor: every topic-partition in (topic, partition) order goes to the
// next member (member-id order, circular) subscribed to its topic.
Assignment assign_round_robin(const Subscriptions& subs,
                              const std::map<std::string, int32_t>& partitions);

// ConsumerProtocolSubscription v0 (topics, null user data).
std::vector<std::byte> encode_subscription(const std::vector<std::string>& topics);
// Reads the topics of any version (0-3); trailing fields and bytes are ignored. False when
// the bytes do not parse.
bool decode_subscription(Bytes bytes, std::vector<std::string>& topics);
// ConsumerProtocolAssignment v0.
std::vector<std::byte> encode_assignment(const std::vector<TopicPartition>& partitions);
bool decode_assignment(Bytes bytes, std::vector<TopicPartition>& partitions);

}  // namespace sluice::consumer
