#include "cluster/acl.h"

#include <gtest/gtest.h>

#include "cluster/metadata.h"

namespace sluice::cluster::acl {
namespace {

pb::AclBinding binding(ResourceType type, std::string name, PatternType pattern,
                       std::string principal, Operation op, Permission perm,
                       std::string host = "*") {
  pb::AclBinding b;
  b.set_resource_type(static_cast<int32_t>(type));
  b.set_resource_name(std::move(name));
  b.set_pattern_type(static_cast<int32_t>(pattern));
  b.set_principal(std::move(principal));
  b.set_host(std::move(host));
  b.set_operation(static_cast<int32_t>(op));
  b.set_permission(static_cast<int32_t>(perm));
  return b;
}

pb::AclFilter any_filter() {
  pb::AclFilter f;
  f.set_resource_type(static_cast<int32_t>(ResourceType::kAny));
  f.set_pattern_type(static_cast<int32_t>(PatternType::kAny));
  f.set_operation(static_cast<int32_t>(Operation::kAny));
  f.set_permission(static_cast<int32_t>(Permission::kAny));
  return f;
}

constexpr auto T = ResourceType::kTopic;
constexpr auto G = ResourceType::kGroup;
constexpr auto C = ResourceType::kCluster;
constexpr auto L = PatternType::kLiteral;
constexpr auto P = PatternType::kPrefixed;
constexpr auto kAllow = Permission::kAllow;
constexpr auto kDeny = Permission::kDeny;

Authorizer make(std::vector<pb::AclBinding> list, bool allow_if_no_acl = false,
                std::set<std::string> supers = {}) {
  google::protobuf::RepeatedPtrField<pb::AclBinding> acls;
  for (auto& b : list) *acls.Add() = std::move(b);
  return Authorizer(Options{true, allow_if_no_acl, std::move(supers)}, acls);
}

TEST(Acl, DisabledAllowsEverything) {
  google::protobuf::RepeatedPtrField<pb::AclBinding> none;
  Authorizer a(Options{}, none);
  EXPECT_TRUE(a.allowed("User:x", "1.2.3.4", Operation::kDelete, T, "t"));
}

TEST(Acl, NoAclFoundFollowsTheSetting) {
  auto open = make({}, true);
  auto closed = make({}, false);
  EXPECT_TRUE(open.allowed("User:x", "h", Operation::kRead, T, "t"));
  EXPECT_FALSE(closed.allowed("User:x", "h", Operation::kRead, T, "t"));
  // With any binding on the resource (for someone else), the resource is no longer open.
  auto other = make({binding(T, "t", L, "User:bob", Operation::kRead, kAllow)}, true);
  EXPECT_FALSE(other.allowed("User:x", "h", Operation::kRead, T, "t"));
  EXPECT_TRUE(other.allowed("User:x", "h", Operation::kRead, T, "u"));
}

TEST(Acl, LiteralPrefixedAndWildcard) {
  auto a = make({binding(T, "orders", L, "User:alice", Operation::kRead, kAllow),
                 binding(T, "logs.", P, "User:alice", Operation::kWrite, kAllow),
                 binding(T, "*", L, "User:carol", Operation::kAll, kAllow)});
  EXPECT_TRUE(a.allowed("User:alice", "h", Operation::kRead, T, "orders"));
  EXPECT_FALSE(a.allowed("User:alice", "h", Operation::kRead, T, "orders2"));
  EXPECT_FALSE(a.allowed("User:alice", "h", Operation::kWrite, T, "orders"));
  EXPECT_TRUE(a.allowed("User:alice", "h", Operation::kWrite, T, "logs.app"));
  EXPECT_FALSE(a.allowed("User:alice", "h", Operation::kWrite, T, "logs"));
  EXPECT_TRUE(a.allowed("User:carol", "h", Operation::kDelete, T, "anything"));
  EXPECT_FALSE(a.allowed("User:bob", "h", Operation::kRead, T, "orders"));
  // A topic ACL says nothing about a group of the same name.
  EXPECT_FALSE(a.allowed("User:alice", "h", Operation::kRead, G, "orders"));
}

TEST(Acl, DenyWins) {
  auto a = make({binding(T, "*", L, "User:*", Operation::kAll, kAllow),
                 binding(T, "secret", P, "User:eve", Operation::kRead, kDeny)});
  EXPECT_TRUE(a.allowed("User:eve", "h", Operation::kRead, T, "public"));
  EXPECT_FALSE(a.allowed("User:eve", "h", Operation::kRead, T, "secret.keys"));
  EXPECT_TRUE(a.allowed("User:eve", "h", Operation::kWrite, T, "secret.keys"));  // READ only
  EXPECT_TRUE(a.allowed("User:bob", "h", Operation::kRead, T, "secret.keys"));
  auto all = make({binding(T, "t", L, "User:eve", Operation::kRead, kAllow),
                   binding(T, "t", L, "User:eve", Operation::kAll, kDeny)});
  EXPECT_FALSE(all.allowed("User:eve", "h", Operation::kRead, T, "t"));
}

TEST(Acl, ImpliedOperations) {
  auto a = make({binding(T, "t", L, "User:w", Operation::kWrite, kAllow),
                 binding(T, "t", L, "User:c", Operation::kAlterConfigs, kAllow),
                 binding(G, "g", L, "User:r", Operation::kRead, kAllow)});
  EXPECT_TRUE(a.allowed("User:w", "h", Operation::kDescribe, T, "t"));
  EXPECT_FALSE(a.allowed("User:w", "h", Operation::kRead, T, "t"));
  EXPECT_TRUE(a.allowed("User:c", "h", Operation::kDescribeConfigs, T, "t"));
  EXPECT_FALSE(a.allowed("User:c", "h", Operation::kDescribe, T, "t"));
  EXPECT_TRUE(a.allowed("User:r", "h", Operation::kDescribe, G, "g"));
  // A DENY of READ does not deny DESCRIBE granted by WRITE.
  auto d = make({binding(T, "t", L, "User:w", Operation::kWrite, kAllow),
                 binding(T, "t", L, "User:w", Operation::kRead, kDeny)});
  EXPECT_TRUE(d.allowed("User:w", "h", Operation::kDescribe, T, "t"));
}

TEST(Acl, HostsAndSuperUsers) {
  auto a = make({binding(T, "t", L, "User:a", Operation::kRead, kAllow, "10.0.0.1")}, false,
                {"User:admin"});
  EXPECT_TRUE(a.allowed("User:a", "10.0.0.1", Operation::kRead, T, "t"));
  EXPECT_FALSE(a.allowed("User:a", "10.0.0.2", Operation::kRead, T, "t"));
  EXPECT_TRUE(a.allowed("User:admin", "x", Operation::kAlter, C, "kafka-cluster"));
}

TEST(Acl, AllowedAnyForIdempotentWrite) {
  auto a = make({binding(T, "p.", P, "User:p", Operation::kWrite, kAllow),
                 binding(T, "x", L, "User:q", Operation::kWrite, kAllow),
                 binding(T, "x", L, "User:q", Operation::kWrite, kDeny),
                 binding(T, "*", L, "User:z", Operation::kAll, kDeny),
                 binding(T, "y", L, "User:z", Operation::kWrite, kAllow)});
  EXPECT_TRUE(a.allowed_any("User:p", "h", Operation::kWrite, T));
  EXPECT_FALSE(a.allowed_any("User:q", "h", Operation::kWrite, T));
  EXPECT_FALSE(a.allowed_any("User:z", "h", Operation::kWrite, T));
  EXPECT_FALSE(a.allowed_any("User:nobody", "h", Operation::kWrite, T));
}

TEST(Acl, Validation) {
  EXPECT_EQ(validate(binding(T, "t", L, "User:a", Operation::kRead, kAllow)), "");
  EXPECT_NE(validate(binding(T, "", L, "User:a", Operation::kRead, kAllow)), "");
  EXPECT_NE(validate(binding(T, "t", PatternType::kMatch, "User:a", Operation::kRead, kAllow)), "");
  EXPECT_NE(validate(binding(T, "t", L, "alice", Operation::kRead, kAllow)), "");
  EXPECT_NE(validate(binding(T, "t", L, "User:a", Operation::kAny, kAllow)), "");
  EXPECT_NE(validate(binding(T, "t", L, "User:a", Operation::kRead, Permission::kAny)), "");
  EXPECT_NE(validate(binding(G, "g", L, "User:a", Operation::kWrite, kAllow)), "");  // not a group op
  EXPECT_NE(validate(binding(C, "c", L, "User:a", Operation::kAlter, kAllow)), "");
  EXPECT_EQ(validate(binding(C, "kafka-cluster", L, "User:a", Operation::kAlter, kAllow)), "");
  EXPECT_NE(validate(binding(ResourceType::kUser, "u", L, "User:a", Operation::kAll, kAllow)), "");
  pb::AclBinding wild = binding(T, "t", L, "User:a", Operation::kRead, kAllow);
  wild.set_operation(99);
  EXPECT_NE(validate(wild), "");
  pb::AclFilter f = any_filter();
  EXPECT_EQ(validate(f), "");
  f.set_operation(0);
  EXPECT_NE(validate(f), "");
}

TEST(Acl, FilterMatching) {
  const auto lit = binding(T, "orders", L, "User:a", Operation::kRead, kAllow);
  const auto star = binding(T, "*", L, "User:a", Operation::kRead, kAllow);
  const auto pre = binding(T, "ord", P, "User:a", Operation::kWrite, kDeny);
  pb::AclFilter f = any_filter();
  EXPECT_TRUE(matches(f, lit) && matches(f, star) && matches(f, pre));
  f.set_resource_name("orders");  // ANY pattern: exact name only
  EXPECT_TRUE(matches(f, lit));
  EXPECT_FALSE(matches(f, star));
  EXPECT_FALSE(matches(f, pre));
  f.set_pattern_type(static_cast<int32_t>(PatternType::kMatch));  // what applies to "orders"
  EXPECT_TRUE(matches(f, lit) && matches(f, star) && matches(f, pre));
  f.set_pattern_type(static_cast<int32_t>(PatternType::kPrefixed));
  EXPECT_FALSE(matches(f, pre));  // name must be equal for PREFIXED
  f.set_resource_name("ord");
  EXPECT_TRUE(matches(f, pre));
  pb::AclFilter g = any_filter();
  g.set_permission(static_cast<int32_t>(kDeny));
  EXPECT_FALSE(matches(g, lit));
  EXPECT_TRUE(matches(g, pre));
  g.set_principal("User:b");
  EXPECT_FALSE(matches(g, pre));
  g = any_filter();
  g.set_resource_type(static_cast<int32_t>(G));
  EXPECT_FALSE(matches(g, lit));
}

TEST(Acl, Names) {
  EXPECT_EQ(name(Operation::kDescribeConfigs), "DESCRIBE_CONFIGS");
  EXPECT_EQ(parse_operation("describe-configs"), Operation::kDescribeConfigs);
  EXPECT_EQ(parse_resource_type("Transactional-Id"), ResourceType::kTransactionalId);
  EXPECT_EQ(parse_pattern_type("prefixed"), PatternType::kPrefixed);
  EXPECT_EQ(parse_permission("deny"), Permission::kDeny);
  EXPECT_FALSE(parse_operation("unknown"));
  EXPECT_FALSE(parse_operation("fly"));
  EXPECT_EQ(describe(binding(T, "t", L, "User:a", Operation::kRead, kAllow)),
            "ALLOW User:a READ TOPIC t (LITERAL) from *");
}

TEST(Acl, MetadataRecordsCreateOnceAndDeleteExactly) {
  MetadataState s;
  pb::Record create;
  *create.mutable_create_acls()->add_acls() = binding(T, "t", L, "User:a", Operation::kRead, kAllow);
  *create.mutable_create_acls()->add_acls() = binding(T, "t", L, "User:a", Operation::kRead, kAllow);
  *create.mutable_create_acls()->add_acls() = binding(G, "g", L, "User:a", Operation::kRead, kAllow);
  ASSERT_TRUE(s.apply(1, create).ok());
  ASSERT_TRUE(s.apply(2, create).ok());
  EXPECT_EQ(s.image().acls_size(), 2);
  pb::Record del;
  *del.mutable_delete_acls()->add_acls() = binding(T, "t", L, "User:a", Operation::kRead, kAllow);
  ASSERT_TRUE(s.apply(3, del).ok());
  ASSERT_EQ(s.image().acls_size(), 1);
  EXPECT_EQ(s.image().acls(0).resource_name(), "g");
  // Survives a snapshot round trip.
  MetadataState r;
  ASSERT_TRUE(r.restore(s.serialize()));
  EXPECT_EQ(r.image().acls_size(), 1);
}

}  // namespace
}  // namespace sluice::cluster::acl
