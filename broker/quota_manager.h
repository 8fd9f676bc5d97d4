// Client quotas enforced by this broker (docs/security.md "Client quotas"): each Produce's
// request bytes count against the client's producer_byte_rate, each Fetch answer's bytes
// against its consumer_byte_rate, per broker as Kafka does. A client over its quota gets the
// throttle time Kafka gives (how long until its rate is back at the quota) in the response's
// throttle_time_ms, and its connection reads no further request for that long
// (Session::throttled_until; Kafka's muted channel); a throttled Fetch is answered without records.
//
// A rate is measured as Kafka's Rate stat: `window_num` samples of `window_size_ms` each, over
// the time since the oldest sample started but at least (window_num - 1) samples long. Thread
// safe (requests of every shard record here); with no quota in the image a record is one
// atomic load.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "cluster/quotas.h"

namespace sluice::broker {

class QuotaManager {
 public:
  enum class Kind : uint8_t { kProduce, kFetch, kConnection, kMutation };
  using Clock = std::chrono::steady_clock;

  QuotaManager(int32_t window_num, int32_t window_size_seconds);

  // The image's quotas (the cluster's image callback, any thread).
  void update(const cluster::pb::Image& image);
  bool any() const { return any_.load(std::memory_order_relaxed); }

  // Records `bytes` for the client (user: the principal's name without "User:") and returns
  // the milliseconds it is to be throttled (0: within its quota), or -1 when it has no quota.
  int32_t record(Kind kind, const std::string& user, const std::string& client_id, double bytes,
                 Clock::time_point now = Clock::now());
  // The most the client's quota allows in one window (Kafka's getMaxValueInQuotaWindow: the
  // quota times window_num - 1 samples); infinity without a quota.
  double window_bytes(Kind kind, const std::string& user, const std::string& client_id) const;
  // A new connection from `ip` (canonical spelling) against its connection_creation_rate: the
  // milliseconds to hold it before closing it unserved (Kafka's connection throttle, at most a
  // window sample's length), 0 to serve it. A refused connection is not counted.
  int32_t record_connection(const std::string& ip, Clock::time_point now = Clock::now());
  bool any_ip() const { return any_ip_.load(std::memory_order_relaxed); }
  // KIP-599's controller_mutation_rate (partitions created or deleted per second), as Kafka's
  // TokenBucket: a bucket of rate x window_num x window_size tokens, full at first, refilled
  // at the rate; a mutation takes its partitions' worth and may leave it below zero. Strict
  // (CreateTopics v6+, CreatePartitions v3+, DeleteTopics v5+): refused while the bucket is
  // below zero, with the time until it is back at zero; else taken whole, however far below
  // zero that leaves it. Permissive (older versions): always taken; throttled by the time the
  // bucket needs to be back at zero. nullopt: the client has no such quota.
  struct Mutation {
    bool accepted = true;
    int32_t throttle_ms = 0;
  };
  std::optional<Mutation> record_mutation(const std::string& user, const std::string& client_id,
                                          double partitions, bool strict,
                                          Clock::time_point now = Clock::now());
  // Gives back what record_mutation took for a mutation that then failed.
  void refund_mutation(const std::string& user, const std::string& client_id, double partitions,
                       Clock::time_point now = Clock::now());

  // Takes back what record() counted (a throttled Fetch answered without its records).
  void unrecord(Kind kind, const std::string& user, const std::string& client_id, double bytes,
                Clock::time_point now = Clock::now());

  // For /metrics: throttled responses and the throttle time given, by kind.
  struct Counts {
    uint64_t throttled = 0;
    uint64_t throttle_ms = 0;
  };
  Counts counts(Kind kind) const;

  // Rate buckets at most: clients active within one window beyond this share one bucket.
  static constexpr size_t kSensorsMax = 100'000;
  size_t sensor_count() const {
    std::lock_guard lock(mu_);
    return sensors_.size();
  }

  // The client's user for quotas: "User:alice" -> "alice" (Kafka's sanitized user name).
  static std::string quota_user(const std::string& principal);

 private:
  struct Sample {
    int64_t start_ms = 0;
    double value = 0;
  };
  struct Sensor {
    std::vector<Sample> samples;
    size_t current = 0;
    int64_t last_used_ms = 0;
  };
  using Key = std::tuple<Kind, std::string, std::string>;  // kind, user tag, client tag
  struct Bucket {
    double tokens = 0;
    int64_t refilled_ms = 0;
  };
  // A token bucket's size for `rate`: window_num samples of window_size_ms of it.
  double burst(double rate) const;
  // The bucket of a limit's clients, refilled up to `now` (made full on first use).
  Bucket& bucket(const cluster::quotas::Limit& limit, int64_t now);

  int64_t ms(Clock::time_point t) const;
  void add(Sensor& s, int64_t now, double v);
  double window_ms(const Sensor& s, int64_t now) const;
  double total(const Sensor& s, int64_t now) const;
  void expire(int64_t now);
  // The sensor of a limit's bucket, made on first use; at kSensorsMax, one shared bucket.
  Sensor& sensor(Kind kind, const cluster::quotas::Limit& limit);
  static Key key_for(Kind kind, const cluster::quotas::Limit& limit);

  const int32_t window_num_;
  const int64_t window_size_ms_;
  const Clock::time_point epoch_ = Clock::now();
  std::atomic<bool> any_{false};
  std::atomic<bool> any_ip_{false};
  mutable std::mutex mu_;
  std::shared_ptr<const cluster::quotas::Table> table_;
  uint64_t table_index_ = 0;  // the image's applied index (an older image is ignored)
  std::map<Key, Sensor> sensors_;
  std::map<Key, Bucket> buckets_;  // controller_mutation_rate
  int64_t next_expiry_ms_ = 0;
  Counts counts_[4];
  bool overflow_warned_ = false;
};

}  // namespace sluice::broker
