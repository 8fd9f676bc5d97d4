#include "consumer/assignor.h"

#include <algorithm>
#include <set>

#include "protocol/codec.h"

namespace sluice::consumer {

namespace {

std::vector<std::string> members_of(const Subscriptions& subs, const std::string& topic) {
  std::vector<std::string> out;
  for (const auto& [member, topics] : subs) {  // std::map: member-id order
    if (std::find(topics.begin(), topics.end(), topic) != topics.end()) out.push_back(member);
  }
  return out;
}

std::set<std::string> all_topics(const Subscriptions& subs) {
  std::set<std::string> out;
  for (const auto& [member, topics] : subs) out.insert(topics.begin(), topics.end());
  return out;
}

Assignment empty_assignment(const Subscriptions& subs) {
  Assignment out;
  for (const auto& [member, topics] : subs) out[member];
  return out;
}

}  // namespace

Assignment assign_range(const Subscriptions& subs,
                        const std::map<std::string, int32_t>& partitions) {
  Assignment out = empty_assignment(subs);
  for (const std::string& topic : all_topics(subs)) {
    auto it = partitions.find(topic);
    if (it == partitions.end()) continue;  // unknown topic: nothing to assign
    const auto members = members_of(subs, topic);
    const int32_t n = it->second;
    const auto m = static_cast<int32_t>(members.size());
    const int32_t per = n / m;
    const int32_t extra = n % m;
    for (int32_t i = 0; i < m; ++i) {
      const int32_t start = per * i + std::min(i, extra);
      const int32_t count = per + (i < extra ? 1 : 0);
      for (int32_t p = start; p < start + count; ++p) out[members[i]].push_back({topic, p});
    }
  }
  return out;
}

Assignment assign_round_robin(const Subscriptions& subs,
                              const std::map<std::string, int32_t>& partitions) {
  Assignment out = empty_assignment(subs);
  std::vector<std::string> members;
  for (const auto& [member, topics] : subs) members.push_back(member);
  if (members.empty()) return out;
  size_t next = 0;
  for (const std::string& topic : all_topics(subs)) {
    auto it = partitions.find(topic);
    if (it == partitions.end()) continue;
    for (int32_t p = 0; p < it->second; ++p) {
      // The next member (circularly) subscribed to `topic`; some member is.
      for (size_t tries = 0; tries < members.size(); ++tries) {
        const std::string& member = members[next % members.size()];
        ++next;
        const auto& topics = subs.at(member);
        if (std::find(topics.begin(), topics.end(), topic) != topics.end()) {
          out[member].push_back({topic, p});
          break;
        }
      }
    }
  }
  return out;
}

std::vector<std::byte> encode_subscription(const std::vector<std::string>& topics) {
  kafka::Writer w(false);
  w.i16(0);
  w.array_count(topics.size());
  for (const auto& t : topics) w.string(t);
  w.null_bytes();
  return std::move(w.buffer());
}

bool decode_subscription(Bytes bytes, std::vector<std::string>& topics) {
  kafka::Reader r(bytes, false);
  int16_t version = 0;
  std::optional<uint32_t> n;
  if (!r.i16(version, "version") || version < 0 || !r.array_count(n, 2, "topics") || !n) {
    return false;
  }
  topics.clear();
  for (uint32_t i = 0; i < *n; ++i) {
    std::string t;
    if (!r.string(t, "topic")) return false;
    topics.push_back(std::move(t));
  }
  return true;
}

std::vector<std::byte> encode_assignment(const std::vector<TopicPartition>& partitions) {
  std::map<std::string, std::vector<int32_t>> by_topic;
  for (const auto& tp : partitions) by_topic[tp.topic].push_back(tp.partition);
  kafka::Writer w(false);
  w.i16(0);
  w.array_count(by_topic.size());
  for (const auto& [topic, ps] : by_topic) {
    w.string(topic);
    w.array_count(ps.size());
    for (int32_t p : ps) w.i32(p);
  }
  w.null_bytes();
  return std::move(w.buffer());
}

bool decode_assignment(Bytes bytes, std::vector<TopicPartition>& partitions) {
  partitions.clear();
  if (bytes.empty()) return true;  // no assignment
  kafka::Reader r(bytes, false);
  int16_t version = 0;
  std::optional<uint32_t> n;
  if (!r.i16(version, "version") || version < 0 || !r.array_count(n, 2, "topics")) return false;
  for (uint32_t i = 0; n && i < *n; ++i) {
    std::string topic;
    std::optional<uint32_t> count;
    if (!r.string(topic, "topic") || !r.array_count(count, 4, "partitions")) return false;
    for (uint32_t j = 0; count && j < *count; ++j) {
      int32_t p = 0;
      if (!r.i32(p, "partition")) return false;
      partitions.push_back({topic, p});
    }
  }
  return true;
}

}  // namespace sluice::consumer
