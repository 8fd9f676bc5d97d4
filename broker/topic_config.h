// The per-topic settings Sluice knows (Kafka's names), their broker-wide defaults, and their
// validation. DescribeConfigs lists them; CreateTopics/AlterConfigs check against them.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "broker/config.h"
#include "broker/topic_registry.h"

namespace sluice::broker {

// One of Kafka's topic-level settings (Kafka 3.8's LogConfig). Every one is accepted and
// stored; `used` says whether Sluice acts on it (docs/configuration.md lists the others).
struct TopicSetting {
  std::string_view name;
  std::string (*default_value)(const BrokerConfig&);
  // An empty result means valid; otherwise what is wrong.
  std::string (*check)(std::string_view value);
  // The broker-level setting the default comes from (DescribeConfigs' synonym), if any.
  std::string_view broker_synonym;
  bool used = false;
  int8_t type = 2;  // DescribeConfigs ConfigType: 1 BOOLEAN, 2 STRING, 3 INT, 5 LONG, 6 DOUBLE, 7 LIST
  bool sensitive = false;
};

const std::vector<TopicSetting>& topic_settings();
const TopicSetting* find_topic_setting(std::string_view name);

// Value checks shared with the broker settings (broker/dynamic_config.h): empty when valid,
// else what is wrong.
std::string check_long_range(std::string_view value, int64_t min, int64_t max);
std::string check_cleanup(std::string_view value);  // delete, compact or both
std::string check_bool(std::string_view value);

// Checks every name and value; the first problem is reported as INVALID_CONFIG.
Result<void, TopicError> validate_topic_configs(const std::map<std::string, std::string>& configs);

// The value in force for `name` on `topic`: its own setting, else the broker default.
std::string topic_setting_value(const TopicInfo& topic, const BrokerConfig& config,
                                std::string_view name);
int64_t topic_setting_int(const TopicInfo& topic, const BrokerConfig& config,
                          std::string_view name);

}  // namespace sluice::broker
