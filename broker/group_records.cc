#include "broker/group_records.h"

#include "protocol/codec.h"

namespace sluice::broker {

namespace {

constexpr int16_t kOffsetKeyVersion = 1;
constexpr int16_t kGroupKeyVersion = 2;
constexpr int16_t kOffsetValueVersion = 3;
constexpr int16_t kGroupValueVersion = 3;

ByteVec take(kafka::Writer& w) { return std::move(w.buffer()); }

}  // namespace

int32_t offsets_partition_for(const std::string& group_id, int32_t partitions) {
  // Java's String.hashCode over UTF-16 code units; group ids are ASCII in practice, and for
  // other UTF-8 bytes we hash the code points as Java would (BMP only).
  int32_t h = 0;
  for (size_t i = 0; i < group_id.size();) {
    auto c = static_cast<uint8_t>(group_id[i]);
    uint32_t cp = c;
    size_t n = 1;
    if (c >= 0xE0 && i + 2 < group_id.size()) {
      cp = ((c & 0x0Fu) << 12) | ((static_cast<uint8_t>(group_id[i + 1]) & 0x3Fu) << 6) |
           (static_cast<uint8_t>(group_id[i + 2]) & 0x3Fu);
      n = 3;
    } else if (c >= 0xC0 && i + 1 < group_id.size()) {
      cp = ((c & 0x1Fu) << 6) | (static_cast<uint8_t>(group_id[i + 1]) & 0x3Fu);
      n = 2;
    }
    h = static_cast<int32_t>(static_cast<uint32_t>(h) * 31u + cp);
    i += n;
  }
  const int32_t abs = h == INT32_MIN ? 0 : (h < 0 ? -h : h);  // Kafka's Utils.abs
  return abs % partitions;
}

ByteVec encode_key(const OffsetKey& key) {
  kafka::Writer w;
  w.i16(kOffsetKeyVersion);
  w.string(key.group);
  w.string(key.topic);
  w.i32(key.partition);
  return take(w);
}

ByteVec encode_key(const GroupKey& key) {
  kafka::Writer w;
  w.i16(kGroupKeyVersion);
  w.string(key.group);
  return take(w);
}

ByteVec encode_offset_value(const CommittedOffset& value) {
  kafka::Writer w;
  w.i16(kOffsetValueVersion);
  w.i64(value.offset);
  w.i32(value.leader_epoch);
  w.string(value.metadata);
  w.i64(value.commit_ms);
  return take(w);
}

ByteVec encode_group_value(const GroupMetadataValue& value) {
  kafka::Writer w;
  w.i16(kGroupValueVersion);
  w.string(value.protocol_type);
  w.i32(value.generation);
  w.nullable_string(value.protocol.empty() ? std::nullopt : std::optional(value.protocol));
  w.nullable_string(value.leader.empty() ? std::nullopt : std::optional(value.leader));
  w.i64(value.state_time_ms);
  w.array_count(value.members.size());
  for (const Member& m : value.members) {
    w.string(m.id);
    w.nullable_string(m.instance_id);
    w.string(m.client_id);
    w.string(m.client_host);
    w.i32(m.rebalance_timeout_ms);
    w.i32(m.session_timeout_ms);
    const ByteVec* sub = m.metadata_for(value.protocol);
    w.bytes(sub ? Bytes(*sub) : Bytes());
    w.bytes(m.assignment);
  }
  return take(w);
}

std::optional<OffsetsTopicKey> decode_key(Bytes bytes) {
  kafka::Reader r(bytes);
  int16_t version = 0;
  if (!r.i16(version, "key.version")) return std::nullopt;
  if (version == 0 || version == 1) {
    OffsetKey k;
    if (!r.string(k.group, "group") || !r.string(k.topic, "topic") ||
        !r.i32(k.partition, "partition")) {
      return std::nullopt;
    }
    return k;
  }
  if (version == 2) {
    GroupKey k;
    if (!r.string(k.group, "group")) return std::nullopt;
    return k;
  }
  return std::nullopt;
}

std::optional<CommittedOffset> decode_offset_value(Bytes bytes) {
  kafka::Reader r(bytes);
  int16_t version = 0;
  CommittedOffset v;
  if (!r.i16(version, "value.version") || !r.i64(v.offset, "offset")) return std::nullopt;
  if (version >= 3 && !r.i32(v.leader_epoch, "leader_epoch")) return std::nullopt;
  if (!r.string(v.metadata, "metadata") || !r.i64(v.commit_ms, "commit_timestamp")) {
    return std::nullopt;
  }
  return v;
}

std::optional<GroupMetadataValue> decode_group_value(Bytes bytes) {
  kafka::Reader r(bytes);
  int16_t version = 0;
  GroupMetadataValue v;
  std::optional<std::string> protocol, leader;
  if (!r.i16(version, "value.version") || version != kGroupValueVersion ||
      !r.string(v.protocol_type, "protocol_type") || !r.i32(v.generation, "generation") ||
      !r.nullable_string(protocol, true, "protocol") ||
      !r.nullable_string(leader, true, "leader") || !r.i64(v.state_time_ms, "state_time")) {
    return std::nullopt;
  }
  v.protocol = protocol.value_or("");
  v.leader = leader.value_or("");
  std::optional<uint32_t> n;
  if (!r.array_count(n, 2 + 2 + 2 + 2 + 4 + 4 + 4 + 4, "members")) return std::nullopt;
  for (uint32_t i = 0; i < n.value_or(0); ++i) {
    Member m;
    ByteVec sub;
    if (!r.string(m.id, "member_id") || !r.nullable_string(m.instance_id, true, "instance") ||
        !r.string(m.client_id, "client_id") || !r.string(m.client_host, "client_host") ||
        !r.i32(m.rebalance_timeout_ms, "rebalance_timeout") ||
        !r.i32(m.session_timeout_ms, "session_timeout") || !r.bytes(sub, "subscription") ||
        !r.bytes(m.assignment, "assignment")) {
      return std::nullopt;
    }
    m.protocols.emplace_back(v.protocol, std::move(sub));
    v.members.push_back(std::move(m));
  }
  return v;
}

}  // namespace sluice::broker
