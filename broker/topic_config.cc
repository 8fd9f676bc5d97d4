#include "broker/topic_config.h"

#include <charconv>

#include "log/format.h"

namespace sluice::broker {
namespace {

std::string check_long_range(std::string_view v, int64_t min, int64_t max) {
  int64_t n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || p != v.data() + v.size()) return "is not a whole number";
  if (n < min) return "must be at least " + std::to_string(min);
  if (n > max) return "must be at most " + std::to_string(max);
  return "";
}
std::string check_long_min(std::string_view v, int64_t min) {
  return check_long_range(v, min, INT64_MAX);
}
std::string check_any_long(std::string_view v) { return check_long_min(v, -1); }
std::string check_positive(std::string_view v) { return check_long_min(v, 1); }
std::string check_non_negative(std::string_view v) { return check_long_min(v, 0); }
// What the log accepts when it opens a partition (log/format.h): a value outside would be
// stored and then refuse start-up.
std::string check_segment_bytes(std::string_view v) {
  return check_long_range(v, static_cast<int64_t>(log::kSegmentBytesMin),
                          static_cast<int64_t>(log::kSegmentBytesMax));
}
std::string check_message_bytes(std::string_view v) {
  return check_long_range(v, 1, static_cast<int64_t>(log::kBatchBytesMax));
}
std::string check_cleanup(std::string_view v) {
  if (v == "delete" || v == "compact" || v == "compact,delete" || v == "delete,compact") return "";
  return "must be delete, compact or compact,delete";
}
std::string check_compression(std::string_view v) {
  for (auto ok : {"producer", "uncompressed", "none", "gzip", "snappy", "lz4", "zstd"}) {
    if (v == ok) return "";
  }
  return "must be producer, uncompressed, gzip, snappy, lz4 or zstd";
}
std::string check_ts_type(std::string_view v) {
  return v == "CreateTime" || v == "LogAppendTime" ? "" : "must be CreateTime or LogAppendTime";
}
std::string check_bool(std::string_view v) {
  return v == "true" || v == "false" ? "" : "must be true or false";
}
std::string check_ratio(std::string_view v) {
  try {
    const double d = std::stod(std::string(v));
    return d >= 0 && d <= 1 ? "" : "must be between 0 and 1";
  } catch (...) {
    return "is not a number";
  }
}

const std::vector<TopicSetting> kSettings = {
    {"cleanup.policy", [](const BrokerConfig&) { return std::string("delete"); }, check_cleanup},
    {"compression.type", [](const BrokerConfig&) { return std::string("producer"); },
     check_compression},
    {"delete.retention.ms", [](const BrokerConfig&) { return std::string("86400000"); },
     check_non_negative},
    {"max.message.bytes", [](const BrokerConfig& c) { return std::to_string(c.message_max_bytes); },
     check_message_bytes},
    {"message.timestamp.type", [](const BrokerConfig&) { return std::string("CreateTime"); },
     check_ts_type},
    {"min.cleanable.dirty.ratio", [](const BrokerConfig&) { return std::string("0.5"); },
     check_ratio},
    {"min.compaction.lag.ms", [](const BrokerConfig&) { return std::string("0"); },
     check_non_negative},
    {"min.insync.replicas", [](const BrokerConfig&) { return std::string("1"); }, check_positive},
    {"retention.bytes", [](const BrokerConfig& c) { return std::to_string(c.retention_bytes); },
     check_any_long},
    {"retention.ms", [](const BrokerConfig& c) { return std::to_string(c.retention_ms); },
     check_any_long},
    {"segment.bytes", [](const BrokerConfig& c) { return std::to_string(c.segment_bytes); },
     check_segment_bytes},
    {"segment.ms", [](const BrokerConfig& c) { return std::to_string(c.roll_ms); }, check_positive},
    {"unclean.leader.election.enable", [](const BrokerConfig&) { return std::string("false"); },
     check_bool},
};

}  // namespace

const std::vector<TopicSetting>& topic_settings() { return kSettings; }

const TopicSetting* find_topic_setting(std::string_view name) {
  for (const auto& s : kSettings) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

Result<void, TopicError> validate_topic_configs(const std::map<std::string, std::string>& configs) {
  for (const auto& [name, value] : configs) {
    const TopicSetting* s = find_topic_setting(name);
    if (!s) {
      return unexpected(
          TopicError{kafka::ErrorCode::kInvalidConfig, "unknown topic setting '" + name + "'"});
    }
    if (std::string why = s->check(value); !why.empty()) {
      return unexpected(TopicError{kafka::ErrorCode::kInvalidConfig,
                                   "invalid value '" + value + "' for " + name + ": " + why});
    }
  }
  return {};
}

std::string topic_setting_value(const TopicInfo& topic, const BrokerConfig& config,
                                std::string_view name) {
  if (auto it = topic.configs.find(std::string(name)); it != topic.configs.end()) return it->second;
  const TopicSetting* s = find_topic_setting(name);
  SLUICE_ASSERT(s != nullptr);
  return s->default_value(config);
}

int64_t topic_setting_int(const TopicInfo& topic, const BrokerConfig& config,
                          std::string_view name) {
  const std::string v = topic_setting_value(topic, config, name);
  int64_t n = 0;
  std::from_chars(v.data(), v.data() + v.size(), n);
  return n;
}

}  // namespace sluice::broker
