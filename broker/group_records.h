// The records of __consumer_offsets, in Kafka's own layout (so Kafka tools can read them):
//   offset key   (version 1): group string, topic string, partition int32
//   offset value (version 3): offset int64, leader epoch int32, metadata string, commit time int64
//   group key    (version 2): group string
//   group value  (version 3): protocol type, generation, protocol?, leader?, state time, members
// A null value (tombstone) deletes the key; compaction keeps only the latest record per key.
// Strings are classic (int16 length) encoding, as Kafka writes them. Pure functions.
#pragma once

#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "broker/group.h"
#include "common/bytes.h"

namespace sluice::broker {

// Kafka's partition for a group: abs(String.hashCode) % partitions, Java semantics.
int32_t offsets_partition_for(const std::string& group_id, int32_t partitions);

struct OffsetKey {
  std::string group;
  std::string topic;
  int32_t partition = 0;
};
struct GroupKey {
  std::string group;
};
using OffsetsTopicKey = std::variant<OffsetKey, GroupKey>;

struct GroupMetadataValue {
  std::string protocol_type;
  int32_t generation = 0;
  std::string protocol;
  std::string leader;
  int64_t state_time_ms = 0;
  std::vector<Member> members;  // id, instance id, client id/host, timeouts, protocol, assignment
};

ByteVec encode_key(const OffsetKey& key);
ByteVec encode_key(const GroupKey& key);
ByteVec encode_offset_value(const CommittedOffset& value);
// Members' subscription is their metadata for `protocol` (stored as their only protocol).
ByteVec encode_group_value(const GroupMetadataValue& value);

// nullopt: not a key we know (skipped on load, e.g. a newer Kafka version).
std::optional<OffsetsTopicKey> decode_key(Bytes bytes);
std::optional<CommittedOffset> decode_offset_value(Bytes bytes);
std::optional<GroupMetadataValue> decode_group_value(Bytes bytes);

}  // namespace sluice::broker
