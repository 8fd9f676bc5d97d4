#include "cluster/acl.h"

#include <algorithm>
#include <array>
#include <cctype>

namespace sluice::cluster::acl {

namespace {

// Kafka's AclEntry.supportedOperations (ALL is valid everywhere).
bool supported(ResourceType t, Operation o) {
  using O = Operation;
  if (o == O::kAll) return true;
  switch (t) {
    case ResourceType::kTopic:
      return o == O::kRead || o == O::kWrite || o == O::kCreate || o == O::kDescribe ||
             o == O::kDelete || o == O::kAlter || o == O::kDescribeConfigs ||
             o == O::kAlterConfigs;
    case ResourceType::kGroup:
      return o == O::kRead || o == O::kDescribe || o == O::kDelete;
    case ResourceType::kCluster:
      return o == O::kCreate || o == O::kClusterAction || o == O::kDescribeConfigs ||
             o == O::kAlterConfigs || o == O::kIdempotentWrite || o == O::kAlter ||
             o == O::kDescribe;
    case ResourceType::kTransactionalId:
      return o == O::kDescribe || o == O::kWrite;
    default:
      return false;
  }
}

bool in_range(int32_t v, int32_t hi) { return v >= 0 && v <= hi; }

bool principal_ok(const std::string& p) {
  const auto colon = p.find(':');
  return colon != std::string::npos && colon > 0 && colon + 1 < p.size();
}

// The operations whose ALLOW grants `op` (besides ALL).
bool grants(Operation granted, Operation op) {
  if (granted == Operation::kAll || granted == op) return true;
  if (op == Operation::kDescribe) {
    return granted == Operation::kRead || granted == Operation::kWrite ||
           granted == Operation::kDelete || granted == Operation::kAlter;
  }
  if (op == Operation::kDescribeConfigs) return granted == Operation::kAlterConfigs;
  return false;
}

Operation op_of(const pb::AclBinding& b) { return static_cast<Operation>(b.operation()); }
Permission perm_of(const pb::AclBinding& b) { return static_cast<Permission>(b.permission()); }

}  // namespace

std::string validate(const pb::AclBinding& b) {
  const auto type = static_cast<ResourceType>(b.resource_type());
  if (type != ResourceType::kTopic && type != ResourceType::kGroup &&
      type != ResourceType::kCluster && type != ResourceType::kTransactionalId) {
    return "resource type " + std::to_string(b.resource_type()) +
           " is not one of TOPIC, GROUP, CLUSTER, TRANSACTIONAL_ID";
  }
  const auto pattern = static_cast<PatternType>(b.pattern_type());
  if (pattern != PatternType::kLiteral && pattern != PatternType::kPrefixed) {
    return "pattern type " + std::to_string(b.pattern_type()) + " is not LITERAL or PREFIXED";
  }
  if (b.resource_name().empty()) return "the resource name is empty";
  if (type == ResourceType::kCluster &&
      (b.resource_name() != kClusterName || pattern != PatternType::kLiteral)) {
    return "a CLUSTER resource is the LITERAL name 'kafka-cluster'";
  }
  if (pattern == PatternType::kPrefixed && b.resource_name() == kWildcard) {
    return "a PREFIXED pattern cannot be '*' (use LITERAL '*')";
  }
  if (!principal_ok(b.principal())) {
    return "principal '" + b.principal() + "' is not of the form Type:name (User:alice)";
  }
  if (b.host().empty()) return "the host is empty (use '*')";
  if (!in_range(b.operation(), 14) || !supported(type, op_of(b))) {
    return "operation " + std::string(name(op_of(b))) + " does not apply to a " +
           std::string(name(type)) + " resource";
  }
  const auto perm = perm_of(b);
  if (perm != Permission::kAllow && perm != Permission::kDeny) {
    return "permission type " + std::to_string(b.permission()) + " is not ALLOW or DENY";
  }
  return {};
}

std::string validate(const pb::AclFilter& f) {
  if (!in_range(f.resource_type(), 7) || f.resource_type() == 0) return "unknown resource type";
  if (!in_range(f.pattern_type(), 4) || f.pattern_type() == 0) return "unknown pattern type";
  if (!in_range(f.operation(), 14) || f.operation() == 0) return "unknown operation";
  if (!in_range(f.permission(), 3) || f.permission() == 0) return "unknown permission type";
  return {};
}

bool matches(const pb::AclFilter& f, const pb::AclBinding& b) {
  const auto ftype = static_cast<ResourceType>(f.resource_type());
  if (ftype != ResourceType::kAny && f.resource_type() != b.resource_type()) return false;
  const auto fpattern = static_cast<PatternType>(f.pattern_type());
  const auto bpattern = static_cast<PatternType>(b.pattern_type());
  if (fpattern == PatternType::kMatch) {
    if (f.has_resource_name()) {
      const std::string& n = f.resource_name();
      const bool applies =
          bpattern == PatternType::kLiteral
              ? (b.resource_name() == n || b.resource_name() == kWildcard)
              : bpattern == PatternType::kPrefixed && n.starts_with(b.resource_name());
      if (!applies) return false;
    }
  } else {
    if (fpattern != PatternType::kAny && f.pattern_type() != b.pattern_type()) return false;
    if (f.has_resource_name() && f.resource_name() != b.resource_name()) return false;
  }
  if (f.has_principal() && f.principal() != b.principal()) return false;
  if (f.has_host() && f.host() != b.host()) return false;
  if (static_cast<Operation>(f.operation()) != Operation::kAny && f.operation() != b.operation()) {
    return false;
  }
  if (static_cast<Permission>(f.permission()) != Permission::kAny &&
      f.permission() != b.permission()) {
    return false;
  }
  return true;
}

bool same(const pb::AclBinding& a, const pb::AclBinding& b) {
  return a.resource_type() == b.resource_type() && a.resource_name() == b.resource_name() &&
         a.pattern_type() == b.pattern_type() && a.principal() == b.principal() &&
         a.host() == b.host() && a.operation() == b.operation() &&
         a.permission() == b.permission();
}

std::string describe(const pb::AclBinding& b) {
  std::string out(name(perm_of(b)));
  out += " " + b.principal() + " " + std::string(name(op_of(b))) + " " +
         std::string(name(static_cast<ResourceType>(b.resource_type()))) + " " +
         b.resource_name() + " (" +
         std::string(name(static_cast<PatternType>(b.pattern_type()))) + ") from " + b.host();
  return out;
}

Authorizer::Authorizer(Options options,
                       const google::protobuf::RepeatedPtrField<pb::AclBinding>& acls)
    : options_(std::move(options)) {
  for (const pb::AclBinding& b : acls) {
    Index& idx = by_type_[b.resource_type()];
    if (static_cast<PatternType>(b.pattern_type()) == PatternType::kPrefixed) {
      idx.prefixed.push_back(b);
    } else {
      idx.literal[b.resource_name()].push_back(b);
    }
    ++count_;
  }
}

bool Authorizer::allowed(const std::string& principal, std::string_view host, Operation op,
                         ResourceType type, std::string_view name) const {
  if (!options_.enabled) return true;
  if (options_.super_users.count(principal)) return true;
  std::vector<const pb::AclBinding*> found;
  auto it = by_type_.find(static_cast<int>(type));
  if (it != by_type_.end()) {
    const Index& idx = it->second;
    for (std::string_view key : {name, kWildcard}) {
      auto l = idx.literal.find(std::string(key));
      if (l != idx.literal.end()) {
        for (const auto& b : l->second) found.push_back(&b);
      }
      if (name == kWildcard) break;
    }
    for (const auto& b : idx.prefixed) {
      if (name.starts_with(b.resource_name())) found.push_back(&b);
    }
  }
  if (found.empty()) return options_.allow_if_no_acl;
  auto applies = [&](const pb::AclBinding& b) {
    return (b.principal() == principal || b.principal() == "User:*") &&
           (b.host() == kWildcard || b.host() == host);
  };
  for (const auto* b : found) {
    if (perm_of(*b) == Permission::kDeny && applies(*b) &&
        (op_of(*b) == Operation::kAll || op_of(*b) == op)) {
      return false;
    }
  }
  for (const auto* b : found) {
    if (perm_of(*b) == Permission::kAllow && applies(*b) && grants(op_of(*b), op)) return true;
  }
  return false;
}

bool Authorizer::allowed_any(const std::string& principal, std::string_view host, Operation op,
                             ResourceType type) const {
  if (!options_.enabled || options_.super_users.count(principal)) return true;
  auto it = by_type_.find(static_cast<int>(type));
  if (it == by_type_.end()) return false;
  std::vector<const pb::AclBinding*> all;
  for (const auto& [n, list] : it->second.literal) {
    for (const auto& b : list) all.push_back(&b);
  }
  for (const auto& b : it->second.prefixed) all.push_back(&b);
  auto applies = [&](const pb::AclBinding& b) {
    return (b.principal() == principal || b.principal() == "User:*") &&
           (b.host() == kWildcard || b.host() == host) &&
           (op_of(b) == Operation::kAll || op_of(b) == op);
  };
  // A DENY on the LITERAL "*" covers every resource of the type.
  for (const auto* b : all) {
    if (perm_of(*b) == Permission::kDeny && applies(*b) && b->resource_name() == kWildcard &&
        static_cast<PatternType>(b->pattern_type()) == PatternType::kLiteral) {
      return false;
    }
  }
  for (const auto* a : all) {
    if (perm_of(*a) != Permission::kAllow || !applies(*a)) continue;
    // Not cancelled by a DENY on the same resource pattern.
    bool denied = false;
    for (const auto* d : all) {
      if (perm_of(*d) == Permission::kDeny && applies(*d) &&
          d->resource_name() == a->resource_name() && d->pattern_type() == a->pattern_type()) {
        denied = true;
        break;
      }
    }
    if (!denied) return true;
  }
  return false;
}

}  // namespace sluice::cluster::acl
