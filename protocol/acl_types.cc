#include "protocol/acl_types.h"

#include <array>
#include <cctype>
#include <string>

namespace sluice::kafka::acl {

namespace {

template <class E, size_t N>
std::string_view name_in(const std::array<std::string_view, N>& names, E e) {
  const auto i = static_cast<size_t>(static_cast<int8_t>(e));
  return i < N ? names[i] : "UNKNOWN";
}

// Case-insensitive, '-' and '_' alike.
template <class E, size_t N>
std::optional<E> parse_in(const std::array<std::string_view, N>& names, std::string_view s) {
  std::string norm;
  for (char c : s) norm += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (size_t i = 1; i < N; ++i) {  // UNKNOWN is never a choice
    if (names[i] == norm) return static_cast<E>(static_cast<int8_t>(i));
  }
  return std::nullopt;
}

constexpr std::array<std::string_view, 8> kTypes = {
    "UNKNOWN", "ANY", "TOPIC", "GROUP", "CLUSTER", "TRANSACTIONAL_ID", "DELEGATION_TOKEN", "USER"};
constexpr std::array<std::string_view, 5> kPatterns = {"UNKNOWN", "ANY", "MATCH", "LITERAL",
                                                       "PREFIXED"};
constexpr std::array<std::string_view, 15> kOperations = {
    "UNKNOWN",          "ANY",           "ALL",          "READ",
    "WRITE",            "CREATE",        "DELETE",       "ALTER",
    "DESCRIBE",         "CLUSTER_ACTION", "DESCRIBE_CONFIGS", "ALTER_CONFIGS",
    "IDEMPOTENT_WRITE", "CREATE_TOKENS", "DESCRIBE_TOKENS"};
constexpr std::array<std::string_view, 4> kPermissions = {"UNKNOWN", "ANY", "DENY", "ALLOW"};

}  // namespace

std::string_view name(ResourceType t) { return name_in(kTypes, t); }
std::string_view name(PatternType t) { return name_in(kPatterns, t); }
std::string_view name(Operation o) { return name_in(kOperations, o); }
std::string_view name(Permission p) { return name_in(kPermissions, p); }
std::optional<ResourceType> parse_resource_type(std::string_view s) {
  return parse_in<ResourceType>(kTypes, s);
}
std::optional<PatternType> parse_pattern_type(std::string_view s) {
  return parse_in<PatternType>(kPatterns, s);
}
std::optional<Operation> parse_operation(std::string_view s) {
  return parse_in<Operation>(kOperations, s);
}
std::optional<Permission> parse_permission(std::string_view s) {
  return parse_in<Permission>(kPermissions, s);
}

}  // namespace sluice::kafka::acl
