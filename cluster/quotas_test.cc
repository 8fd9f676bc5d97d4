#include "cluster/quotas.h"

#include <gtest/gtest.h>

namespace sluice::cluster::quotas {
namespace {

using kafka::ErrorCode;

// Sets `values` on the entity through the same path a request takes.
void set(pb::Image& img, const std::vector<EntityPart>& entity,
         const std::map<std::string, double>& values) {
  std::vector<Op> ops;
  for (const auto& [k, v] : values) ops.push_back({k, v, false});
  pb::AlterClientQuotas change;
  ASSERT_FALSE(check_entry(entity, ops, *change.add_changes()).has_value());
  apply(img, change);
}

std::optional<Refusal> check(const std::vector<EntityPart>& entity, const std::vector<Op>& ops) {
  pb::AlterClientQuotas::Change out;
  return check_entry(entity, ops, out);
}

TEST(ClientQuotas, KafkasChecksOfAnEntry) {
  const Op rate{kProducerByteRate, 1024, false};
  EXPECT_EQ(check({}, {rate})->code, ErrorCode::kInvalidRequest);
  EXPECT_EQ(check({{kUser, "a"}, {kUser, "b"}}, {rate})->code, ErrorCode::kInvalidRequest);
  EXPECT_EQ(check({{"group", "a"}}, {rate})->code, ErrorCode::kInvalidRequest);
  EXPECT_EQ(check({{kUser, ""}}, {rate})->code, ErrorCode::kInvalidRequest);
  EXPECT_EQ(check({{kUser, "a"}}, {rate, rate})->code, ErrorCode::kInvalidRequest);
  EXPECT_EQ(check({{kUser, "a"}}, {{"max.message.bytes", 1, false}})->code,
            ErrorCode::kInvalidRequest);
  EXPECT_EQ(check({{kUser, "a"}}, {{kProducerByteRate, 10.5, false}})->code,
            ErrorCode::kInvalidRequest);
  EXPECT_EQ(check({{kUser, "a"}}, {{kProducerByteRate, 0, false}})->code,
            ErrorCode::kInvalidRequest);
  // Not enforced by Sluice: refused, with the reason.
  auto pct = check({{kUser, "a"}}, {{"request_percentage", 50, false}});
  ASSERT_TRUE(pct);
  EXPECT_NE(pct->message.find("does not enforce"), std::string::npos);
  // KIP-599's partition mutation rate: a DOUBLE, any rate above 0; not for an ip.
  EXPECT_FALSE(check({{kUser, "a"}}, {{kControllerMutationRate, 0.5, false}}));
  EXPECT_FALSE(check({{kClientId, std::nullopt}}, {{kControllerMutationRate, 5, false}}));
  EXPECT_EQ(check({{kUser, "a"}}, {{kControllerMutationRate, 0, false}})->code,
            ErrorCode::kInvalidRequest);
  EXPECT_EQ(check({{kIp, "127.0.0.1"}}, {{kControllerMutationRate, 5, false}})->code,
            ErrorCode::kInvalidRequest);
  // The ip entity: alone, an address (not a host name), connection_creation_rate only.
  const Op conns{kConnectionCreationRate, 10, false};
  EXPECT_FALSE(check({{kIp, "127.0.0.1"}}, {conns}));
  EXPECT_FALSE(check({{kIp, "::1"}}, {conns}));
  EXPECT_FALSE(check({{kIp, std::nullopt}}, {conns}));
  EXPECT_EQ(check({{kIp, "localhost"}}, {conns})->code, ErrorCode::kInvalidRequest);
  EXPECT_EQ(check({{kIp, "127.0.0.1"}, {kUser, "a"}}, {conns})->code, ErrorCode::kInvalidRequest);
  EXPECT_EQ(check({{kIp, "127.0.0.1"}}, {rate})->code, ErrorCode::kInvalidRequest);
  EXPECT_EQ(check({{kUser, "a"}}, {conns})->code, ErrorCode::kInvalidRequest);
  // Accepted: user, client id, both, defaults; a removal of any known key.
  EXPECT_FALSE(check({{kUser, "a"}}, {rate}));
  EXPECT_FALSE(check({{kClientId, std::nullopt}}, {{kConsumerByteRate, 2e6, false}}));
  EXPECT_FALSE(check({{kUser, std::nullopt}, {kClientId, "c"}}, {rate}));
  EXPECT_FALSE(check({{kUser, "a"}}, {{kProducerByteRate, 0, true}}));
}

TEST(ClientQuotas, SetRemoveAndDropEmptyEntities) {
  pb::Image img;
  set(img, {{kClientId, "c"}}, {{kProducerByteRate, 100}, {kConsumerByteRate, 200}});
  set(img, {{kClientId, "c"}}, {{kProducerByteRate, 300}});
  ASSERT_EQ(img.client_quotas_size(), 1);
  EXPECT_EQ(img.client_quotas(0).values().at(kProducerByteRate), 300);
  EXPECT_EQ(img.client_quotas(0).values().at(kConsumerByteRate), 200);
  pb::AlterClientQuotas change;
  ASSERT_FALSE(check_entry({{kClientId, "c"}},
                           {{kProducerByteRate, 0, true}, {kConsumerByteRate, 0, true}},
                           *change.add_changes()));
  apply(img, change);
  EXPECT_EQ(img.client_quotas_size(), 0);
  apply(img, change);  // removing what is not there: nothing
  EXPECT_EQ(img.client_quotas_size(), 0);
}

TEST(ClientQuotas, EntitiesAreKeptSortedAndCounted) {
  pb::Image img;
  set(img, {{kUser, "b"}}, {{kProducerByteRate, 1}});
  set(img, {{kUser, "a"}}, {{kProducerByteRate, 2}});
  set(img, {{kClientId, "z"}}, {{kProducerByteRate, 3}});
  ASSERT_EQ(img.client_quotas_size(), 3);
  EXPECT_EQ(from_parts(img.client_quotas(0).entity()), (Entity{{kClientId, "z"}}));
  EXPECT_EQ(from_parts(img.client_quotas(1).entity()), (Entity{{kUser, "a"}}));
  EXPECT_EQ(from_parts(img.client_quotas(2).entity()), (Entity{{kUser, "b"}}));
  pb::AlterClientQuotas change;
  ASSERT_FALSE(check_entry({{kUser, "a"}}, {{kConsumerByteRate, 5, false}}, *change.add_changes()));
  ASSERT_FALSE(check_entry({{kUser, "c"}}, {{kConsumerByteRate, 5, false}}, *change.add_changes()));
  ASSERT_FALSE(check_entry({{kUser, "d"}}, {{kConsumerByteRate, 0, true}}, *change.add_changes()));
  EXPECT_EQ(entities_after(img, change), 4u) << "one new entity; a removal adds none";
}

TEST(ClientQuotas, PrecedenceAndSharedBuckets) {
  pb::Image img;
  Table none(img);
  EXPECT_TRUE(none.empty());
  EXPECT_FALSE(none.resolve(kProducerByteRate, "alice", "app"));

  set(img, {{kClientId, std::nullopt}}, {{kProducerByteRate, 8}});
  set(img, {{kClientId, "app"}}, {{kProducerByteRate, 7}});
  set(img, {{kUser, std::nullopt}}, {{kProducerByteRate, 6}});
  set(img, {{kUser, std::nullopt}, {kClientId, std::nullopt}}, {{kProducerByteRate, 5}});
  set(img, {{kUser, std::nullopt}, {kClientId, "app"}}, {{kProducerByteRate, 4}});
  set(img, {{kUser, "alice"}}, {{kProducerByteRate, 3}});
  set(img, {{kUser, "alice"}, {kClientId, std::nullopt}}, {{kProducerByteRate, 2}});
  set(img, {{kUser, "alice"}, {kClientId, "app"}}, {{kProducerByteRate, 1}});
  // The levels in Kafka's order: remove the best match each time.
  struct Expect {
    double rate;
    std::string user_tag;
    std::string client_tag;
    std::vector<EntityPart> entity;
  };
  const std::vector<Expect> order = {
      {1, "alice", "app", {{kUser, "alice"}, {kClientId, "app"}}},
      {2, "alice", "app", {{kUser, "alice"}, {kClientId, std::nullopt}}},
      {3, "alice", "", {{kUser, "alice"}}},
      {4, "alice", "app", {{kUser, std::nullopt}, {kClientId, "app"}}},
      {5, "alice", "app", {{kUser, std::nullopt}, {kClientId, std::nullopt}}},
      {6, "alice", "", {{kUser, std::nullopt}}},
      {7, "", "app", {{kClientId, "app"}}},
      {8, "", "app", {{kClientId, std::nullopt}}},
  };
  for (const auto& e : order) {
    Table t(img);
    auto l = t.resolve(kProducerByteRate, "alice", "app");
    ASSERT_TRUE(l) << e.rate;
    EXPECT_EQ(l->rate, e.rate);
    EXPECT_EQ(l->user_tag, e.user_tag) << e.rate;
    EXPECT_EQ(l->client_tag, e.client_tag) << e.rate;
    EXPECT_FALSE(t.resolve(kConsumerByteRate, "alice", "app")) << "keys resolve on their own";
    pb::AlterClientQuotas change;
    ASSERT_FALSE(check_entry(e.entity, {{kProducerByteRate, 0, true}}, *change.add_changes()));
    apply(img, change);
  }
  EXPECT_TRUE(Table(img).empty());
}

TEST(ClientQuotas, ConnectionRatesByIp) {
  pb::Image img;
  Table none(img);
  EXPECT_FALSE(none.has_ip());
  EXPECT_FALSE(none.resolve_ip("127.0.0.1"));
  set(img, {{kIp, std::nullopt}}, {{kConnectionCreationRate, 50}});
  set(img, {{kIp, "0:0:0:0:0:0:0:1"}}, {{kConnectionCreationRate, 5}});
  Table t(img);
  EXPECT_TRUE(t.has_ip());
  EXPECT_TRUE(t.empty()) << "no user or client-id quota";
  EXPECT_EQ(t.resolve_ip("::1")->rate, 5) << "one spelling of an address";
  EXPECT_EQ(t.resolve_ip("::1")->client_tag, "::1");
  EXPECT_EQ(t.resolve_ip("10.0.0.7")->rate, 50);
  EXPECT_EQ(t.resolve_ip("10.0.0.7")->client_tag, "10.0.0.7") << "each ip its own rate";
  EXPECT_EQ(canonical_ip("0:0:0:0:0:0:0:1"), "::1");
  EXPECT_EQ(canonical_ip("127.0.0.1"), "127.0.0.1");
  EXPECT_FALSE(canonical_ip("127.0.0.01"));
  EXPECT_FALSE(canonical_ip(std::string("1.2.3.4\0", 8)));
}

TEST(ClientQuotas, NamesAreAnyBytes) {
  pb::Image img;
  const std::string odd("a=1:b\0\xff", 7);
  set(img, {{kClientId, odd}}, {{kProducerByteRate, 9}});
  Table t(img);
  EXPECT_EQ(t.resolve(kProducerByteRate, "", odd)->rate, 9);
  EXPECT_FALSE(t.resolve(kProducerByteRate, "", "a=1:b"));
}

TEST(ClientQuotas, DescribeFilters) {
  pb::Image img;
  set(img, {{kUser, "alice"}}, {{kProducerByteRate, 1}});
  set(img, {{kUser, std::nullopt}}, {{kProducerByteRate, 2}});
  set(img, {{kUser, "alice"}, {kClientId, "app"}}, {{kProducerByteRate, 3}});
  set(img, {{kClientId, "app"}}, {{kConsumerByteRate, 4}});
  auto count = [&](const std::vector<Component>& c, bool strict) {
    auto r = describe(img, c, strict);
    EXPECT_TRUE(r);
    return r ? r->size() : size_t{99};
  };
  EXPECT_EQ(count({}, false), 4u);
  EXPECT_EQ(count({}, true), 0u);
  EXPECT_EQ(count({{kUser, 0, "alice"}}, false), 2u);
  EXPECT_EQ(count({{kUser, 0, "alice"}}, true), 1u);
  EXPECT_EQ(count({{kUser, 1, std::nullopt}}, false), 1u);
  EXPECT_EQ(count({{kUser, 2, std::nullopt}}, false), 3u);  // the default too
  EXPECT_EQ(count({{kUser, 2, std::nullopt}}, true), 2u);
  EXPECT_EQ(count({{kClientId, 0, "app"}, {kUser, 2, std::nullopt}}, false), 1u);
  EXPECT_EQ(count({{kUser, 0, "bob"}}, false), 0u);
  auto one = describe(img, {{kClientId, 0, "app"}}, true);
  ASSERT_TRUE(one);
  ASSERT_EQ(one->size(), 1u);
  EXPECT_EQ((*one)[0].values.at(kConsumerByteRate), 4);

  EXPECT_EQ(describe(img, {{kUser, 0, std::nullopt}}, false).error().code,
            ErrorCode::kInvalidRequest);
  EXPECT_EQ(describe(img, {{kUser, 1, "x"}}, false).error().code, ErrorCode::kInvalidRequest);
  EXPECT_EQ(describe(img, {{kUser, 3, std::nullopt}}, false).error().code,
            ErrorCode::kInvalidRequest);
  EXPECT_EQ(describe(img, {{kUser, 2, std::nullopt}, {kUser, 2, std::nullopt}}, false).error().code,
            ErrorCode::kInvalidRequest);
  EXPECT_EQ(describe(img, {{"group", 2, std::nullopt}}, false).error().code,
            ErrorCode::kUnsupportedVersion);
  EXPECT_EQ(describe(img, {{kIp, 2, std::nullopt}, {kUser, 2, std::nullopt}}, false).error().code,
            ErrorCode::kInvalidRequest);
}

}  // namespace
}  // namespace sluice::cluster::quotas
