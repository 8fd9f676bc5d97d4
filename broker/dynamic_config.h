// Dynamic broker configs (Kafka's KIP-226): the broker settings AlterConfigs and
// IncrementalAlterConfigs may change at run time, on the BROKER resource "<id>" (that broker)
// or "" (the cluster-wide default). The values live in the controller's metadata
// (cluster.proto Image.broker_configs), so every broker sees them and they survive restarts.
// Precedence, as in Kafka: per-broker dynamic > cluster-default dynamic > static (flags,
// --config file) > built-in default. Every other setting is read-only (docs/operations.md).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "broker/config.h"

namespace sluice::broker {

using ConfigMap = std::map<std::string, std::string>;

// Kafka's DescribeConfigs ConfigSource values.
constexpr int8_t kSourceTopicConfig = 1;
constexpr int8_t kSourceDynamicBroker = 2;
constexpr int8_t kSourceDynamicDefaultBroker = 3;
constexpr int8_t kSourceStaticBroker = 4;
constexpr int8_t kSourceDefault = 5;

struct BrokerSetting {
  std::string_view name;  // Kafka's name (Sluice's flag without the dashes)
  std::string (*get)(const BrokerConfig&);
  // Dynamic settings only (null for read-only ones): the check (empty: valid, else what is
  // wrong, as start-up would say) and the setter of an already checked value.
  std::string (*check)(std::string_view value) = nullptr;
  void (*set)(BrokerConfig&, std::string_view value) = nullptr;
  int8_t type = 2;  // DescribeConfigs ConfigType: 1 BOOLEAN, 2 STRING, 3 INT, 5 LONG, 7 LIST
  bool dynamic() const { return set != nullptr; }
};

// Every broker setting DescribeConfigs lists, dynamic ones first.
const std::vector<BrokerSetting>& broker_settings();
const BrokerSetting* find_broker_setting(std::string_view name);

// Checks a resource's new dynamic set: no read-only setting, every dynamic one's value valid.
// Empty: valid; else the message (Kafka answers INVALID_REQUEST). A name that is no setting
// of Sluice's is accepted and kept, as Kafka keeps custom broker configs (it refuses only its
// own read-only settings: kafka.server.DynamicBrokerConfig.validateConfigs): clients set
// Kafka's dynamic settings Sluice has no use for (librdkafka's admin tests set
// sasl.kerberos.min.time.before.relogin), and DescribeConfigs lists them; they have no effect.
std::string validate_broker_configs(const ConfigMap& configs);

// The names of `configs` that are no setting of Sluice's (custom ones, kept with no effect).
std::vector<std::string> custom_broker_configs(const ConfigMap& configs);

// The settings in force: `base` (static) with the cluster default's and then the broker's own
// dynamic values over it. Values that do not check (never written so) and custom settings
// are skipped.
BrokerConfig effective_broker_config(const BrokerConfig& base, const ConfigMap& cluster_default,
                                     const ConfigMap& own);

// Where a setting's value comes from, most important first (DescribeConfigs' synonyms): the
// broker's own dynamic value, the cluster default, the static value when it differs from the
// built-in default, the built-in default.
struct SettingLevel {
  int8_t source = kSourceDefault;
  std::string value;
};
std::vector<SettingLevel> broker_setting_levels(const BrokerSetting& s, const BrokerConfig& base,
                                                const ConfigMap& cluster_default,
                                                const ConfigMap& own);

// Dynamic settings read on hot paths (every accept, idle check, replication send): the broker
// stores the values in force here.
struct RuntimeLimits {
  std::atomic<int32_t> max_connections{10000};
  std::atomic<int64_t> idle_timeout_ms{10 * 60 * 1000};
  std::atomic<int64_t> move_throttle_bytes{0};
  void store(const BrokerConfig& c) {
    max_connections.store(c.max_connections);
    idle_timeout_ms.store(c.idle_timeout_ms);
    move_throttle_bytes.store(c.move_throttle_bytes);
  }
};

}  // namespace sluice::broker
