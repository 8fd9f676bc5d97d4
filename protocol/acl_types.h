// Kafka's ACL enums with their wire values (CreateAcls, DescribeAcls, DeleteAcls) and their
// names as Kafka's tools print and parse them. Shared by the broker's authorizer (cluster/acl.h)
// and the `sluice acl` command. Pure values and functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace sluice::kafka::acl {

enum class ResourceType : int8_t {
  kUnknown = 0,
  kAny = 1,
  kTopic = 2,
  kGroup = 3,
  kCluster = 4,
  kTransactionalId = 5,
  kDelegationToken = 6,
  kUser = 7,
};
enum class PatternType : int8_t { kUnknown = 0, kAny = 1, kMatch = 2, kLiteral = 3, kPrefixed = 4 };
enum class Operation : int8_t {
  kUnknown = 0,
  kAny = 1,
  kAll = 2,
  kRead = 3,
  kWrite = 4,
  kCreate = 5,
  kDelete = 6,
  kAlter = 7,
  kDescribe = 8,
  kClusterAction = 9,
  kDescribeConfigs = 10,
  kAlterConfigs = 11,
  kIdempotentWrite = 12,
  kCreateTokens = 13,
  kDescribeTokens = 14,
};
enum class Permission : int8_t { kUnknown = 0, kAny = 1, kDeny = 2, kAllow = 3 };

// The one name a CLUSTER resource has (Kafka's).
inline constexpr std::string_view kClusterName = "kafka-cluster";
inline constexpr std::string_view kWildcard = "*";

// Names as Kafka's tools print and parse them ("TOPIC", "PREFIXED", "DESCRIBE_CONFIGS",
// "ALLOW"); parsing is case-insensitive and also takes '-' for '_' ("transactional-id").
std::string_view name(ResourceType t);
std::string_view name(PatternType t);
std::string_view name(Operation o);
std::string_view name(Permission p);
std::optional<ResourceType> parse_resource_type(std::string_view s);
std::optional<PatternType> parse_pattern_type(std::string_view s);
std::optional<Operation> parse_operation(std::string_view s);
std::optional<Permission> parse_permission(std::string_view s);

}  // namespace sluice::kafka::acl
