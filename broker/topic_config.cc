#include "broker/topic_config.h"

#include <charconv>
#include <limits>

#include "log/format.h"

namespace sluice::broker {

std::string check_long_range(std::string_view v, int64_t min, int64_t max) {
  int64_t n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || p != v.data() + v.size()) return "is not a whole number";
  if (n < min) return "must be at least " + std::to_string(min);
  if (n > max) return "must be at most " + std::to_string(max);
  return "";
}

std::string check_cleanup(std::string_view v) {
  if (v == "delete" || v == "compact" || v == "compact,delete" || v == "delete,compact") return "";
  return "must be delete, compact or compact,delete";
}
std::string check_bool(std::string_view v) {
  return v == "true" || v == "false" ? "" : "must be true or false";
}

namespace {

std::string check_long_min(std::string_view v, int64_t min) {
  return check_long_range(v, min, INT64_MAX);
}
std::string check_any_long(std::string_view v) { return check_long_min(v, -1); }
std::string check_positive(std::string_view v) { return check_long_min(v, 1); }
std::string check_non_negative(std::string_view v) { return check_long_min(v, 0); }
std::string check_any_int(std::string_view v) {
  return check_long_min(v, std::numeric_limits<int32_t>::min());
}
// What the log accepts when it opens a partition (log/format.h): a value outside would be
// stored and then refuse start-up.
std::string check_segment_bytes(std::string_view v) {
  return check_long_range(v, static_cast<int64_t>(log::kSegmentBytesMin),
                          static_cast<int64_t>(log::kSegmentBytesMax));
}
std::string check_message_bytes(std::string_view v) {
  return check_long_range(v, 1, static_cast<int64_t>(log::kBatchBytesMax));
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
std::string check_ratio(std::string_view v) {
  try {
    const double d = std::stod(std::string(v));
    return d >= 0 && d <= 1 ? "" : "must be between 0 and 1";
  } catch (...) {
    return "is not a number";
  }
}

std::string check_any(std::string_view) { return ""; }
std::string check_level(std::string_view v) { return check_long_min(v, -1); }
std::string check_local_retention(std::string_view v) { return check_long_min(v, -2); }
std::string fixed(std::string_view v) { return std::string(v); }

constexpr int8_t kBool = 1, kString = 2, kInt = 3, kLong = 5, kDouble = 6, kList = 7;

// Every topic setting of Kafka 3.8, by name. `used`: Sluice acts on it; the rest are stored
// and reported so that tools which set them keep working (docs/configuration.md).
const std::vector<TopicSetting> kSettings = {
    {"cleanup.policy", [](const BrokerConfig& c) { return c.cleanup_policy; }, check_cleanup,
     "log.cleanup.policy", true, kList},
    {"compression.gzip.level", [](const BrokerConfig&) { return fixed("-1"); }, check_level,
     "compression.gzip.level", false, kInt},
    {"compression.lz4.level", [](const BrokerConfig&) { return fixed("9"); }, check_positive,
     "compression.lz4.level", false, kInt},
    {"compression.type", [](const BrokerConfig&) { return fixed("producer"); }, check_compression,
     "compression.type", false, kString},
    {"compression.zstd.level", [](const BrokerConfig&) { return fixed("3"); }, check_any_int,
     "compression.zstd.level", false, kInt},
    {"delete.retention.ms", [](const BrokerConfig&) { return fixed("86400000"); },
     check_non_negative, "log.cleaner.delete.retention.ms", true, kLong},
    {"file.delete.delay.ms", [](const BrokerConfig&) { return fixed("60000"); },
     check_non_negative, "log.segment.delete.delay.ms", false, kLong},
    {"flush.messages", [](const BrokerConfig&) { return fixed("9223372036854775807"); },
     check_positive, "log.flush.interval.messages", false, kLong},
    {"flush.ms", [](const BrokerConfig&) { return fixed("9223372036854775807"); },
     check_non_negative, "log.flush.interval.ms", false, kLong},
    {"follower.replication.throttled.replicas", [](const BrokerConfig&) { return fixed(""); },
     check_any, "follower.replication.throttled.replicas", false, kList},
    {"index.interval.bytes", [](const BrokerConfig&) { return fixed("4096"); },
     check_non_negative, "log.index.interval.bytes", false, kInt},
    {"leader.replication.throttled.replicas", [](const BrokerConfig&) { return fixed(""); },
     check_any, "leader.replication.throttled.replicas", false, kList},
    {"local.retention.bytes", [](const BrokerConfig&) { return fixed("-2"); },
     check_local_retention, "log.local.retention.bytes", false, kLong},
    {"local.retention.ms", [](const BrokerConfig&) { return fixed("-2"); }, check_local_retention,
     "log.local.retention.ms", false, kLong},
    {"max.compaction.lag.ms", [](const BrokerConfig&) { return fixed("9223372036854775807"); },
     check_positive, "log.cleaner.max.compaction.lag.ms", false, kLong},
    {"max.message.bytes", [](const BrokerConfig& c) { return std::to_string(c.message_max_bytes); },
     check_message_bytes, "message.max.bytes", true, kInt},
    {"message.downconversion.enable", [](const BrokerConfig&) { return fixed("true"); },
     check_bool, "log.message.downconversion.enable", false, kBool},
    {"message.format.version", [](const BrokerConfig&) { return fixed("3.0-IV1"); }, check_any,
     "log.message.format.version", false, kString},
    {"message.timestamp.after.max.ms",
     [](const BrokerConfig&) { return fixed("9223372036854775807"); }, check_non_negative,
     "log.message.timestamp.after.max.ms", false, kLong},
    {"message.timestamp.before.max.ms",
     [](const BrokerConfig&) { return fixed("9223372036854775807"); }, check_non_negative,
     "log.message.timestamp.before.max.ms", false, kLong},
    {"message.timestamp.difference.max.ms",
     [](const BrokerConfig&) { return fixed("9223372036854775807"); }, check_non_negative,
     "log.message.timestamp.difference.max.ms", false, kLong},
    {"message.timestamp.type", [](const BrokerConfig&) { return fixed("CreateTime"); },
     check_ts_type, "log.message.timestamp.type", true, kString},
    {"min.cleanable.dirty.ratio", [](const BrokerConfig&) { return fixed("0.5"); }, check_ratio,
     "log.cleaner.min.cleanable.ratio", false, kDouble},
    {"min.compaction.lag.ms", [](const BrokerConfig&) { return fixed("0"); }, check_non_negative,
     "log.cleaner.min.compaction.lag.ms", false, kLong},
    {"min.insync.replicas",
     [](const BrokerConfig& c) { return std::to_string(c.min_insync_replicas); }, check_positive,
     "min.insync.replicas", true, kInt},
    {"preallocate", [](const BrokerConfig&) { return fixed("false"); }, check_bool,
     "log.preallocate", false, kBool},
    {"remote.storage.enable", [](const BrokerConfig&) { return fixed("false"); }, check_bool, "",
     false, kBool},
    {"retention.bytes", [](const BrokerConfig& c) { return std::to_string(c.retention_bytes); },
     check_any_long, "log.retention.bytes", true, kLong},
    {"retention.ms", [](const BrokerConfig& c) { return std::to_string(c.retention_ms); },
     check_any_long, "log.retention.ms", true, kLong},
    {"segment.bytes", [](const BrokerConfig& c) { return std::to_string(c.segment_bytes); },
     check_segment_bytes, "log.segment.bytes", true, kInt},
    {"segment.index.bytes", [](const BrokerConfig&) { return fixed("10485760"); },
     check_non_negative, "log.index.size.max.bytes", false, kInt},
    {"segment.jitter.ms", [](const BrokerConfig&) { return fixed("0"); }, check_non_negative,
     "log.roll.jitter.ms", false, kLong},
    {"segment.ms", [](const BrokerConfig& c) { return std::to_string(c.roll_ms); }, check_positive,
     "log.roll.ms", true, kLong},
    {"unclean.leader.election.enable", [](const BrokerConfig&) { return fixed("false"); },
     check_bool, "unclean.leader.election.enable", false, kBool},
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
