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

struct TopicSetting {
  std::string_view name;
  std::string (*default_value)(const BrokerConfig&);
  // An empty result means valid; otherwise what is wrong.
  std::string (*check)(std::string_view value);
  bool sensitive = false;
};

const std::vector<TopicSetting>& topic_settings();
const TopicSetting* find_topic_setting(std::string_view name);

// Checks every name and value; the first problem is reported as INVALID_CONFIG.
Result<void, TopicError> validate_topic_configs(const std::map<std::string, std::string>& configs);

// The value in force for `name` on `topic`: its own setting, else the broker default.
std::string topic_setting_value(const TopicInfo& topic, const BrokerConfig& config,
                                std::string_view name);
int64_t topic_setting_int(const TopicInfo& topic, const BrokerConfig& config,
                          std::string_view name);

}  // namespace sluice::broker
