#include "broker/quota_manager.h"

#include <gtest/gtest.h>

#include <cmath>

namespace sluice::broker {
namespace {

namespace quotas = cluster::quotas;
using Kind = QuotaManager::Kind;
using std::chrono::milliseconds;
using std::chrono::seconds;

cluster::pb::Image image_with(const std::vector<quotas::EntityPart>& entity, const char* key,
                              double value, uint64_t index = 1) {
  cluster::pb::Image img;
  cluster::pb::AlterClientQuotas change;
  EXPECT_FALSE(quotas::check_entry(entity, {{key, value, false}}, *change.add_changes()));
  quotas::apply(img, change);
  img.set_applied_index(index);
  return img;
}

TEST(QuotaManager, WithoutQuotasNothingIsRecorded) {
  QuotaManager q(11, 1);
  EXPECT_FALSE(q.any());
  EXPECT_EQ(q.record(Kind::kProduce, "alice", "app", 1e9), -1);
  EXPECT_TRUE(std::isinf(q.window_bytes(Kind::kFetch, "alice", "app")));
  q.update(image_with({{quotas::kClientId, "other"}}, quotas::kProducerByteRate, 1000));
  EXPECT_TRUE(q.any());
  EXPECT_EQ(q.record(Kind::kProduce, "alice", "app", 1e9), -1) << "no quota for this client";
  EXPECT_EQ(q.record(Kind::kFetch, "", "other", 1e9), -1) << "the quota is for produce only";
  EXPECT_EQ(q.sensor_count(), 0u);
}

// Kafka's Rate over 11 samples of 1 s: at least 10 s long at first; the throttle is how long
// until the window's rate is back at the quota: (rate - quota) / quota * window.
TEST(QuotaManager, KafkasRateAndThrottleTime) {
  QuotaManager q(11, 1);
  q.update(image_with({{quotas::kClientId, "c"}}, quotas::kProducerByteRate, 1000));
  const auto t0 = QuotaManager::Clock::now();
  EXPECT_EQ(q.record(Kind::kProduce, "", "c", 5000, t0), 0);     // 500 B/s over 10 s
  EXPECT_EQ(q.record(Kind::kProduce, "", "c", 5000, t0), 0);     // 1000 B/s: at the quota
  EXPECT_EQ(q.record(Kind::kProduce, "", "c", 5000, t0), 5000);  // 1500 B/s: 0.5 x 10 s
  EXPECT_EQ(q.counts(Kind::kProduce).throttled, 1u);
  EXPECT_EQ(q.counts(Kind::kProduce).throttle_ms, 5000u);
  // 4 s later the window is still 10 s: 15,100 B -> 1510 B/s.
  EXPECT_EQ(q.record(Kind::kProduce, "", "c", 100, t0 + seconds(4)), 5100);
  // Once every sample has aged out (11 s), the client starts afresh.
  EXPECT_EQ(q.record(Kind::kProduce, "", "c", 100, t0 + seconds(30)), 0);
  EXPECT_DOUBLE_EQ(q.window_bytes(Kind::kProduce, "", "c"), 10'000);
}

// KIP-599 as Kafka's StrictControllerMutationQuotaTest: 10 partitions/s over 10 samples of
// 1 s, a bucket of 100. Strict: taken whole while not below zero, then refused until the
// bucket is back at zero; permissive: always taken, throttled by the time to get back.
TEST(QuotaManager, ControllerMutationRateIsKafkasTokenBucket) {
  QuotaManager q(10, 1);
  q.update(image_with({{quotas::kUser, "alice"}}, quotas::kControllerMutationRate, 10));
  const auto t0 = QuotaManager::Clock::now();
  EXPECT_FALSE(q.record_mutation("bob", "x", 1000, true, t0)) << "no quota for bob";
  auto m = q.record_mutation("alice", "x", 90, true, t0);
  ASSERT_TRUE(m);
  EXPECT_TRUE(m->accepted);
  EXPECT_EQ(m->throttle_ms, 0);
  m = q.record_mutation("alice", "y", 90, true, t0);  // 10 left: taken whole, to -80
  EXPECT_TRUE(m->accepted);
  EXPECT_EQ(m->throttle_ms, 0);
  m = q.record_mutation("alice", "x", 1, true, t0);
  EXPECT_FALSE(m->accepted);
  EXPECT_EQ(m->throttle_ms, 8000) << "80 below zero at 10 a second";
  m = q.record_mutation("alice", "x", 1, true, t0 + seconds(7));
  EXPECT_FALSE(m->accepted);
  EXPECT_EQ(m->throttle_ms, 1000);
  m = q.record_mutation("alice", "x", 5, true, t0 + seconds(8));
  EXPECT_TRUE(m->accepted);  // back at zero
  // A failed mutation gives its partitions back.
  q.refund_mutation("alice", "x", 5, t0 + seconds(8));
  m = q.record_mutation("alice", "x", 0, true, t0 + seconds(8));
  EXPECT_TRUE(m->accepted);
  // Permissive: taken below zero, throttled for the time to refill to zero.
  m = q.record_mutation("alice", "x", 30, false, t0 + seconds(8));
  EXPECT_TRUE(m->accepted);
  EXPECT_EQ(m->throttle_ms, 3000);
  EXPECT_EQ(q.counts(Kind::kMutation).throttled, 3u);
  // The bucket refills to its burst, no further.
  m = q.record_mutation("alice", "x", 100, true, t0 + seconds(1000));
  EXPECT_TRUE(m->accepted);
  m = q.record_mutation("alice", "x", 1, false, t0 + seconds(1000));
  EXPECT_EQ(m->throttle_ms, 100);
}

TEST(QuotaManager, UnrecordTakesBackAThrottledFetch) {
  QuotaManager q(3, 1);  // a window of at least 2 s
  q.update(image_with({{quotas::kUser, std::nullopt}}, quotas::kConsumerByteRate, 1000));
  const auto t0 = QuotaManager::Clock::now();
  EXPECT_EQ(q.record(Kind::kFetch, "bob", "x", 1500, t0), 0);
  const int32_t t = q.record(Kind::kFetch, "bob", "x", 1500, t0);
  EXPECT_EQ(t, 1000);  // 3000 B over 2 s: 1500 B/s
  q.unrecord(Kind::kFetch, "bob", "x", 1500, t0);
  EXPECT_EQ(q.record(Kind::kFetch, "bob", "x", 0, t0), 0);
  EXPECT_DOUBLE_EQ(q.window_bytes(Kind::kFetch, "bob", "x"), 2000);
}

// A quota set for a user is shared by all of the user's client ids; the default user's quota
// applies to each user on its own.
TEST(QuotaManager, WhoSharesARate) {
  QuotaManager q(11, 1);
  cluster::pb::Image img = image_with({{quotas::kUser, "alice"}}, quotas::kProducerByteRate, 1000);
  cluster::pb::AlterClientQuotas change;
  ASSERT_FALSE(quotas::check_entry({{quotas::kUser, std::nullopt}},
                                   {{quotas::kProducerByteRate, 1000, false}},
                                   *change.add_changes()));
  quotas::apply(img, change);
  q.update(img);
  const auto t0 = QuotaManager::Clock::now();
  EXPECT_EQ(q.record(Kind::kProduce, "alice", "a", 8000, t0), 0);
  EXPECT_GT(q.record(Kind::kProduce, "alice", "b", 8000, t0), 0) << "alice's clients share";
  EXPECT_EQ(q.record(Kind::kProduce, "bob", "a", 8000, t0), 0);
  EXPECT_EQ(q.record(Kind::kProduce, "carol", "a", 8000, t0), 0) << "each user its own";
  EXPECT_EQ(q.sensor_count(), 3u);
}

TEST(QuotaManager, AnOlderImageIsIgnored) {
  QuotaManager q(11, 1);
  q.update(image_with({{quotas::kClientId, "c"}}, quotas::kProducerByteRate, 1000, 5));
  q.update(cluster::pb::Image{});  // applied index 0: older
  EXPECT_TRUE(q.any());
  cluster::pb::Image none;
  none.set_applied_index(6);
  q.update(none);
  EXPECT_FALSE(q.any());
}

// A client inventing client ids cannot grow the buckets without bound: past kSensorsMax active
// at once, newcomers share one.
TEST(QuotaManager, BucketsAreBounded) {
  QuotaManager q(11, 1);
  q.update(image_with({{quotas::kClientId, std::nullopt}}, quotas::kProducerByteRate, 1000));
  const auto t0 = QuotaManager::Clock::now();
  for (size_t i = 0; i < QuotaManager::kSensorsMax; ++i) {
    ASSERT_EQ(q.record(Kind::kProduce, "", "id-" + std::to_string(i), 1, t0), 0);
  }
  EXPECT_EQ(q.sensor_count(), QuotaManager::kSensorsMax);
  EXPECT_EQ(q.record(Kind::kProduce, "", "late-1", 9000, t0), 0);
  EXPECT_GT(q.record(Kind::kProduce, "", "late-2", 9000, t0), 0) << "the newcomers share";
  EXPECT_EQ(q.sensor_count(), QuotaManager::kSensorsMax + 1);
  // Idle for a whole window, the buckets go.
  EXPECT_EQ(q.record(Kind::kProduce, "", "later", 1, t0 + seconds(12)), 0);
  EXPECT_EQ(q.sensor_count(), 1u);
}

// connection_creation_rate: a connection over the rate is held (Kafka's throttle, at most one
// sample long) and not counted, so the client gets in again at the quota's pace.
TEST(QuotaManager, ConnectionsOverTheirRate) {
  QuotaManager q(11, 1);
  EXPECT_EQ(q.record_connection("127.0.0.1"), 0);
  q.update(image_with({{quotas::kIp, "127.0.0.1"}}, quotas::kConnectionCreationRate, 2));
  EXPECT_TRUE(q.any_ip());
  EXPECT_FALSE(q.any()) << "produce and fetch stay on the fast path";
  const auto t0 = QuotaManager::Clock::now();
  for (int i = 0; i < 20; ++i) ASSERT_EQ(q.record_connection("127.0.0.1", t0), 0) << i;
  EXPECT_EQ(q.record_connection("127.0.0.1", t0), 500);  // 2.1 a second over 10 s
  EXPECT_EQ(q.record_connection("127.0.0.1", t0), 500) << "the held one was not counted";
  EXPECT_EQ(q.record_connection("10.1.2.3", t0), 0) << "another ip";
  EXPECT_EQ(q.counts(Kind::kConnection).throttled, 2u);
  EXPECT_EQ(q.record_connection("127.0.0.1", t0 + seconds(12)), 0);
}

TEST(QuotaManager, QuotaUserIsThePrincipalsName) {
  EXPECT_EQ(QuotaManager::quota_user("User:alice"), "alice");
  EXPECT_EQ(QuotaManager::quota_user("User:ANONYMOUS"), "ANONYMOUS");
  EXPECT_EQ(QuotaManager::quota_user("Group:x"), "Group:x");
}

}  // namespace
}  // namespace sluice::broker
