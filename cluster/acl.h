// ACLs as Kafka has them (KIP-290 patterns, AclAuthorizer semantics): the enums with Kafka's
// wire values, validation of bindings and filters, filter matching (DescribeAcls/DeleteAcls)
// and the Authorizer, an immutable index over one metadata image's bindings that answers
// "may this principal do this to that resource". Pure functions and values: no I/O, no threads;
// an Authorizer is shared read-only between shards. docs/security.md "ACLs" is the user's view.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "cluster/cluster.pb.h"
#include "protocol/acl_types.h"

namespace sluice::cluster::acl {

using namespace kafka::acl;  // the enums, kClusterName, name() and parse_*()

// Empty when the binding can be stored, else why not (Kafka answers INVALID_REQUEST):
// a concrete resource type Sluice enforces (TOPIC, GROUP, CLUSTER, TRANSACTIONAL_ID), LITERAL
// or PREFIXED, a non-empty name ("kafka-cluster" for CLUSTER), a principal "Type:name", a
// host, a concrete operation valid for the resource type, ALLOW or DENY.
std::string validate(const pb::AclBinding& b);
// Empty when the filter can be used; UNKNOWN anywhere is refused (as Kafka does).
std::string validate(const pb::AclFilter& f);
// Kafka's AclBindingFilter.matches: ANY and absent fields match everything; pattern MATCH
// selects the bindings that apply to the named resource (its LITERAL name, the LITERAL "*",
// and every PREFIXED prefix of it).
bool matches(const pb::AclFilter& f, const pb::AclBinding& b);
bool same(const pb::AclBinding& a, const pb::AclBinding& b);
// One line for logs and the CLI: "ALLOW User:alice READ TOPIC orders (LITERAL) from *".
std::string describe(const pb::AclBinding& b);

struct Options {
  bool enabled = false;         // --authorizer.enabled: off, everything is allowed
  bool allow_if_no_acl = true;  // allow.everyone.if.no.acl.found
  std::set<std::string> super_users;  // "User:admin"
};

// The decision procedure of Kafka's AclAuthorizer over one set of bindings:
// super users may do anything; a resource with no binding at all (for any principal) is
// open when allow_if_no_acl, else closed; a DENY matching the principal (or User:*), the host
// (or *) and the operation (or ALL) refuses; else an ALLOW matching them permits, where
// DESCRIBE is also granted by READ, WRITE, DELETE and ALTER, and DESCRIBE_CONFIGS by
// ALTER_CONFIGS; else refused.
class Authorizer {
 public:
  Authorizer(Options options, const google::protobuf::RepeatedPtrField<pb::AclBinding>& acls);
  bool enabled() const { return options_.enabled; }
  bool allowed(const std::string& principal, std::string_view host, Operation op,
               ResourceType type, std::string_view name) const;
  // Whether some resource of the type allows `op` for the principal (Kafka's
  // authorizeByResourceType, used for IDEMPOTENT_WRITE by WRITE on any topic): an ALLOW binding
  // for the principal and operation that no DENY of the same reach cancels.
  bool allowed_any(const std::string& principal, std::string_view host, Operation op,
                   ResourceType type) const;
  size_t size() const { return count_; }

 private:
  struct Index {
    std::unordered_map<std::string, std::vector<pb::AclBinding>> literal;  // "*" included
    std::vector<pb::AclBinding> prefixed;
  };
  Options options_;
  std::unordered_map<int, Index> by_type_;
  size_t count_ = 0;
};

}  // namespace sluice::cluster::acl
