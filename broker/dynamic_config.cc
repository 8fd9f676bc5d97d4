#include "broker/dynamic_config.h"

#include <charconv>
#include <spdlog/spdlog.h>

#include "broker/topic_config.h"
#include "log/format.h"

namespace sluice::broker {
namespace {

int64_t to_long(std::string_view v) {
  int64_t n = 0;
  std::from_chars(v.data(), v.data() + v.size(), n);
  return n;
}

constexpr int8_t kBool = 1, kString = 2, kInt = 3, kLong = 5, kList = 7;

// A whole-number setting: `field` of BrokerConfig, valid in [min, max] (the flag's range).
#define SLUICE_NUMBER(NAME, FIELD, MIN, MAX, TYPE)                                        \
  BrokerSetting {                                                                         \
    NAME, [](const BrokerConfig& c) { return std::to_string(c.FIELD); },                  \
        [](std::string_view v) { return check_long_range(v, (MIN), (MAX)); },             \
        [](BrokerConfig& c, std::string_view v) {                                         \
          c.FIELD = static_cast<decltype(c.FIELD)>(to_long(v));                           \
        },                                                                                \
        TYPE                                                                              \
  }
#define SLUICE_READ_ONLY(NAME, EXPR, TYPE) \
  BrokerSetting { NAME, [](const BrokerConfig& c) { return std::string(EXPR); }, nullptr, nullptr, TYPE }

const char* flush_name(FlushPolicy p) {
  return p == FlushPolicy::kEveryBatch ? "every-batch" : p == FlushPolicy::kInterval ? "interval"
                                                                                    : "never";
}

std::string listeners_text(const BrokerConfig& c) {
  std::string out;
  for (const Listener& l : c.listeners) {
    out += (out.empty() ? "" : ",") + l.name + "://" + l.address.to_string();
  }
  return out;
}

const std::vector<BrokerSetting> kSettings = {
    // Dynamic: what sluiced reads at run time (docs/operations.md, "Broker settings at run time").
    SLUICE_NUMBER("num.partitions", num_partitions, 1, 100000, kInt),
    {"default.replication.factor",
     [](const BrokerConfig& c) { return std::to_string(c.default_replication_factor); },
     [](std::string_view v) {  // -1: min(3, live brokers)
       return v == "0" ? std::string("must be -1 or at least 1") : check_long_range(v, -1, 1000);
     },
     [](BrokerConfig& c, std::string_view v) {
       c.default_replication_factor = static_cast<int16_t>(to_long(v));
     },
     kInt},
    {"auto.create.topics.enable",
     [](const BrokerConfig& c) { return std::string(c.auto_create_topics ? "true" : "false"); },
     check_bool, [](BrokerConfig& c, std::string_view v) { c.auto_create_topics = v == "true"; },
     kBool},
    SLUICE_NUMBER("min.insync.replicas", min_insync_replicas, 1, 1000, kInt),
    SLUICE_NUMBER("log.segment.bytes", segment_bytes, static_cast<int64_t>(log::kSegmentBytesMin),
                  static_cast<int64_t>(log::kSegmentBytesMax), kInt),
    SLUICE_NUMBER("log.roll.ms", roll_ms, 1, INT64_MAX, kLong),
    SLUICE_NUMBER("log.retention.ms", retention_ms, -1, INT64_MAX, kLong),
    SLUICE_NUMBER("log.retention.bytes", retention_bytes, -1, INT64_MAX, kLong),
    {"log.cleanup.policy", [](const BrokerConfig& c) { return c.cleanup_policy; }, check_cleanup,
     [](BrokerConfig& c, std::string_view v) { c.cleanup_policy = std::string(v); }, kList},
    SLUICE_NUMBER("message.max.bytes", message_max_bytes, 1024,
                  static_cast<int64_t>(log::kBatchBytesMax), kInt),
    SLUICE_NUMBER("max.connections", max_connections, 0, INT32_MAX, kInt),
    SLUICE_NUMBER("connections.max.idle.ms", idle_timeout_ms, -1, INT64_MAX, kLong),
    SLUICE_NUMBER("replica.move.throttle.bytes", move_throttle_bytes, 0, int64_t{1} << 40, kLong),
    // Read-only: fixed at start.
    SLUICE_READ_ONLY("broker.id", std::to_string(c.node_id), kInt),
    SLUICE_READ_ONLY("node.id", std::to_string(c.node_id), kInt),
    SLUICE_READ_ONLY("log.dirs", c.data_dir, kString),
    SLUICE_READ_ONLY("listeners", listeners_text(c), kString),
    SLUICE_READ_ONLY("broker.rack", c.rack, kString),
    SLUICE_READ_ONLY("log.flush", flush_name(c.flush_policy), kString),
    SLUICE_READ_ONLY("log.flush.interval.ms", std::to_string(c.flush_interval_ms), kLong),
    SLUICE_READ_ONLY("socket.request.max.bytes", std::to_string(c.request_max_bytes), kInt),
    SLUICE_READ_ONLY("queued.max.request.bytes", std::to_string(c.queued_max_request_bytes),
                     kLong),
    SLUICE_READ_ONLY("replica.lag.time.max.ms", std::to_string(c.replica_lag_time_max_ms), kLong),
    SLUICE_READ_ONLY("offsets.topic.num.partitions", std::to_string(c.offsets_topic_partitions),
                     kInt),
    SLUICE_READ_ONLY("group.min.session.timeout.ms",
                     std::to_string(c.group_min_session_timeout_ms), kInt),
    SLUICE_READ_ONLY("group.max.session.timeout.ms",
                     std::to_string(c.group_max_session_timeout_ms), kInt),
    SLUICE_READ_ONLY("group.initial.rebalance.delay.ms",
                     std::to_string(c.group_initial_rebalance_delay_ms), kInt),
    SLUICE_READ_ONLY("authorizer.enabled", c.authorizer_enabled ? "true" : "false", kBool),
    SLUICE_READ_ONLY("auto.leader.rebalance.enable", c.leader_balancing ? "true" : "false", kBool),
    SLUICE_READ_ONLY("replica.move.max.concurrent", std::to_string(c.move_max_concurrent), kInt),
};

#undef SLUICE_NUMBER
#undef SLUICE_READ_ONLY

void apply_all(BrokerConfig& c, const ConfigMap& values) {
  for (const auto& [name, value] : values) {
    const BrokerSetting* s = find_broker_setting(name);
    if (!s) continue;  // a custom setting: kept, read by nothing here
    if (!s->dynamic() || !s->check(value).empty()) {
      spdlog::warn("dynamic broker config {}={} is not valid here: ignored", name, value);
      continue;
    }
    s->set(c, value);
  }
}

}  // namespace

const std::vector<BrokerSetting>& broker_settings() { return kSettings; }

const BrokerSetting* find_broker_setting(std::string_view name) {
  for (const auto& s : kSettings) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

std::string validate_broker_configs(const ConfigMap& configs) {
  for (const auto& [name, value] : configs) {
    const BrokerSetting* s = find_broker_setting(name);
    if (!s) continue;  // a custom setting (see the header)
    if (!s->dynamic()) {
      return "Cannot update these configs dynamically: " + name +
             " (it is read-only: set it with a flag or in the --config file and restart)";
    }
    if (std::string why = s->check(value); !why.empty()) {
      return "invalid value '" + value + "' for " + name + ": " + why;
    }
  }
  return "";
}

std::vector<std::string> custom_broker_configs(const ConfigMap& configs) {
  std::vector<std::string> out;
  for (const auto& [name, value] : configs) {
    if (!find_broker_setting(name)) out.push_back(name);
  }
  return out;
}

BrokerConfig effective_broker_config(const BrokerConfig& base, const ConfigMap& cluster_default,
                                     const ConfigMap& own) {
  BrokerConfig c = base;
  apply_all(c, cluster_default);
  apply_all(c, own);
  return c;
}

std::vector<SettingLevel> broker_setting_levels(const BrokerSetting& s, const BrokerConfig& base,
                                                const ConfigMap& cluster_default,
                                                const ConfigMap& own) {
  std::vector<SettingLevel> out;
  if (s.dynamic()) {
    if (auto it = own.find(std::string(s.name)); it != own.end()) {
      out.push_back({kSourceDynamicBroker, it->second});
    }
    if (auto it = cluster_default.find(std::string(s.name)); it != cluster_default.end()) {
      out.push_back({kSourceDynamicDefaultBroker, it->second});
    }
  }
  const std::string built_in = s.get(BrokerConfig{});
  if (std::string v = s.get(base); v != built_in) out.push_back({kSourceStaticBroker, v});
  out.push_back({kSourceDefault, built_in});
  return out;
}

}  // namespace sluice::broker
