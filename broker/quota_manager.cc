#include "broker/quota_manager.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

#include <spdlog/spdlog.h>

namespace sluice::broker {

namespace {
// A sensor idle for a whole window holds no live sample: dropping it changes no rate (Kafka
// keeps them an hour, for its metrics).
constexpr int64_t kExpiryEveryMs = 1000;
constexpr int32_t kThrottleMaxMs = 60 * 60 * 1000;

const char* key_of(QuotaManager::Kind kind) {
  return kind == QuotaManager::Kind::kProduce ? cluster::quotas::kProducerByteRate
                                              : cluster::quotas::kConsumerByteRate;
}
}  // namespace

QuotaManager::QuotaManager(int32_t window_num, int32_t window_size_seconds)
    : window_num_(std::max(2, window_num)),
      window_size_ms_(int64_t{1000} * std::max(1, window_size_seconds)),
      table_(std::make_shared<const cluster::quotas::Table>()) {}

void QuotaManager::update(const cluster::pb::Image& image) {
  if (image.client_quotas().empty()) {  // the common case: no table to build
    std::lock_guard lock(mu_);
    if (image.applied_index() < table_index_) return;
    table_index_ = image.applied_index();
    if (!table_->empty() || table_->has_ip()) {
      table_ = std::make_shared<const cluster::quotas::Table>();
    }
    any_.store(false, std::memory_order_relaxed);
    any_ip_.store(false, std::memory_order_relaxed);
    return;
  }
  auto table = std::make_shared<const cluster::quotas::Table>(image);
  const bool any = !table->empty();
  const bool any_ip = table->has_ip();
  std::lock_guard lock(mu_);
  if (image.applied_index() < table_index_) return;
  table_index_ = image.applied_index();
  table_ = std::move(table);
  any_.store(any, std::memory_order_relaxed);
  any_ip_.store(any_ip, std::memory_order_relaxed);
}

std::string QuotaManager::quota_user(const std::string& principal) {
  constexpr std::string_view kPrefix = "User:";
  if (principal.compare(0, kPrefix.size(), kPrefix) == 0) return principal.substr(kPrefix.size());
  return principal;
}

int64_t QuotaManager::ms(Clock::time_point t) const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t - epoch_).count();
}

// Kafka's SampledStat.record: a sample takes values for window_size_ms_ from its start, then
// the next (oldest) one starts over.
void QuotaManager::add(Sensor& s, int64_t now, double v) {
  if (s.samples.empty()) {
    s.samples.resize(static_cast<size_t>(window_num_));
    for (Sample& x : s.samples) x.start_ms = now;
    s.current = 0;
  }
  Sample* cur = &s.samples[s.current];
  if (now >= cur->start_ms + window_size_ms_) {
    s.current = (s.current + 1) % s.samples.size();
    cur = &s.samples[s.current];
    cur->start_ms = now;
    cur->value = 0;
  }
  cur->value += v;
  s.last_used_ms = now;
}

// The samples still inside the window (Kafka's purgeObsoleteSamples resets older ones).
double QuotaManager::total(const Sensor& s, int64_t now) const {
  const int64_t expire = window_size_ms_ * window_num_;
  double sum = 0;
  for (const Sample& x : s.samples) {
    if (now - x.start_ms < expire) sum += x.value;
  }
  return sum;
}

// Kafka's Rate.windowSize: from the oldest live sample's start, at least window_num_ - 1 whole
// samples.
double QuotaManager::window_ms(const Sensor& s, int64_t now) const {
  const int64_t expire = window_size_ms_ * window_num_;
  int64_t oldest = now;
  for (const Sample& x : s.samples) {
    if (now - x.start_ms < expire) oldest = std::min(oldest, x.start_ms);
  }
  int64_t elapsed = now - oldest;
  const int64_t full = elapsed / window_size_ms_;
  const int64_t min_full = window_num_ - 1;
  if (full < min_full) elapsed += (min_full - full) * window_size_ms_;
  return static_cast<double>(std::max<int64_t>(elapsed, 1));
}

void QuotaManager::expire(int64_t now) {
  if (now < next_expiry_ms_) return;  // at most once a second: a scan is O(buckets)
  next_expiry_ms_ = now + kExpiryEveryMs;
  const int64_t idle = window_size_ms_ * window_num_;
  std::erase_if(sensors_,
                [now, idle](const auto& kv) { return now - kv.second.last_used_ms > idle; });
  // A bucket not below zero and idle a whole window has refilled whole (its burst is a
  // window of its rate): a fresh one is the same.
  std::erase_if(buckets_, [now, idle](const auto& kv) {
    return kv.second.tokens >= 0 && now - kv.second.refilled_ms > idle;
  });
}

double QuotaManager::burst(double rate) const {
  return rate * static_cast<double>(window_num_) * static_cast<double>(window_size_ms_) / 1000.0;
}

QuotaManager::Bucket& QuotaManager::bucket(const cluster::quotas::Limit& limit, int64_t now) {
  const double full = burst(limit.rate);
  Key key = key_for(Kind::kMutation, limit);
  auto it = buckets_.find(key);
  if (it == buckets_.end()) {
    if (buckets_.size() >= kSensorsMax) key = Key{Kind::kMutation, "", "\x01overflow"};
    it = buckets_.try_emplace(key, Bucket{full, now}).first;
  }
  Bucket& b = it->second;
  b.tokens =
      std::min(full, b.tokens + limit.rate * static_cast<double>(now - b.refilled_ms) / 1000.0);
  b.refilled_ms = now;
  return b;
}

std::optional<QuotaManager::Mutation> QuotaManager::record_mutation(const std::string& user,
                                                                    const std::string& client_id,
                                                                    double partitions, bool strict,
                                                                    Clock::time_point now_tp) {
  if (!any()) return std::nullopt;
  const int64_t now = ms(now_tp);
  std::lock_guard lock(mu_);
  expire(now);
  auto limit = table_->resolve(cluster::quotas::kControllerMutationRate, user, client_id);
  if (!limit) return std::nullopt;
  Bucket& b = bucket(*limit, now);
  // Kafka's throttle: how long the bucket needs to refill to zero.
  auto until_zero = [&] {
    const double ms = -b.tokens / limit->rate * 1000.0;
    return static_cast<int32_t>(std::lround(std::clamp(ms, 1.0, double{kThrottleMaxMs})));
  };
  Mutation out;
  if (strict && b.tokens < 0) {
    out.accepted = false;
    out.throttle_ms = until_zero();
  } else {
    b.tokens -= partitions;
    if (!strict && b.tokens < 0) out.throttle_ms = until_zero();
  }
  if (out.throttle_ms > 0) {
    Counts& c = counts_[static_cast<int>(Kind::kMutation)];
    ++c.throttled;
    c.throttle_ms += static_cast<uint64_t>(out.throttle_ms);
  }
  return out;
}

void QuotaManager::refund_mutation(const std::string& user, const std::string& client_id,
                                   double partitions, Clock::time_point now_tp) {
  if (!any()) return;
  const int64_t now = ms(now_tp);
  std::lock_guard lock(mu_);
  auto limit = table_->resolve(cluster::quotas::kControllerMutationRate, user, client_id);
  if (!limit) return;
  Bucket& b = bucket(*limit, now);
  b.tokens = std::min(burst(limit->rate), b.tokens + partitions);
}

// A bucket's key: the tags, long ones (a client id may be 32 KiB) cut to a prefix and a hash,
// so the keys of kSensorsMax buckets stay small (two long ids alike in both merely share).
QuotaManager::Key QuotaManager::key_for(Kind kind, const cluster::quotas::Limit& limit) {
  auto bounded = [](const std::string& tag) {
    constexpr size_t kTagMax = 256;
    if (tag.size() <= kTagMax) return tag;
    return tag.substr(0, 64) + "#" + std::to_string(std::hash<std::string>{}(tag)) + ":" +
           std::to_string(tag.size());
  };
  return Key{kind, bounded(limit.user_tag), bounded(limit.client_tag)};
}

QuotaManager::Sensor& QuotaManager::sensor(Kind kind, const cluster::quotas::Limit& limit) {
  Key key = key_for(kind, limit);
  if (auto it = sensors_.find(key); it != sensors_.end()) return it->second;
  if (sensors_.size() >= kSensorsMax) {
    // As many clients active within one window as this (a client making up client ids?): the
    // newcomers share one rate instead of growing the map without bound.
    if (!overflow_warned_) {
      overflow_warned_ = true;
      spdlog::warn(
          "client quotas: {} clients active at once; further ones share one rate (a client "
          "inventing client ids?)",
          kSensorsMax);
    }
    key = Key{kind, "", std::string("\x01overflow")};
  }
  return sensors_[key];
}

int32_t QuotaManager::record(Kind kind, const std::string& user, const std::string& client_id,
                             double bytes, Clock::time_point now_tp) {
  if (!any()) return -1;
  const int64_t now = ms(now_tp);
  std::lock_guard lock(mu_);
  expire(now);
  auto limit = table_->resolve(key_of(kind), user, client_id);
  if (!limit) return -1;
  Sensor& s = sensor(kind, *limit);
  add(s, now, bytes);
  const double window = window_ms(s, now);
  const double rate = total(s, now) * 1000.0 / window;  // bytes per second
  if (rate <= limit->rate) return 0;
  // Kafka's QuotaUtils.throttleTime: how long until the window's rate is back at the quota.
  // Not capped by the window, as Kafka's bandwidth quotas: a request far larger than the
  // quota allows in a window is paid for in full (an hour at most, to stay in range).
  const double throttle = (rate - limit->rate) / limit->rate * window;
  const auto out = static_cast<int32_t>(std::lround(std::min(throttle, double{kThrottleMaxMs})));
  Counts& c = counts_[static_cast<int>(kind)];
  ++c.throttled;
  c.throttle_ms += static_cast<uint64_t>(out);
  return out;
}

void QuotaManager::unrecord(Kind kind, const std::string& user, const std::string& client_id,
                            double bytes, Clock::time_point now_tp) {
  if (!any()) return;
  const int64_t now = ms(now_tp);
  std::lock_guard lock(mu_);
  auto limit = table_->resolve(key_of(kind), user, client_id);
  if (!limit) return;
  auto it = sensors_.find(key_for(kind, *limit));
  if (it == sensors_.end()) return;
  add(it->second, now, -bytes);
}

int32_t QuotaManager::record_connection(const std::string& ip, Clock::time_point now_tp) {
  if (!any_ip()) return 0;
  const int64_t now = ms(now_tp);
  std::lock_guard lock(mu_);
  expire(now);
  auto limit = table_->resolve_ip(ip);
  if (!limit) return 0;
  Sensor& s = sensor(Kind::kConnection, *limit);
  add(s, now, 1);
  const double window = window_ms(s, now);
  const double rate = total(s, now) * 1000.0 / window;
  if (rate <= limit->rate) return 0;
  add(s, now, -1);  // not let in: not counted
  // Kafka's connection throttle is bounded by one sample's length.
  const double throttle =
      std::min((rate - limit->rate) / limit->rate * window, static_cast<double>(window_size_ms_));
  const auto out = std::max<int32_t>(1, static_cast<int32_t>(std::lround(throttle)));
  Counts& c = counts_[static_cast<int>(Kind::kConnection)];
  ++c.throttled;
  c.throttle_ms += static_cast<uint64_t>(out);
  return out;
}

double QuotaManager::window_bytes(Kind kind, const std::string& user,
                                  const std::string& client_id) const {
  if (!any()) return std::numeric_limits<double>::infinity();
  std::lock_guard lock(mu_);
  auto limit = table_->resolve(key_of(kind), user, client_id);
  if (!limit) return std::numeric_limits<double>::infinity();
  return limit->rate * static_cast<double>(window_num_ - 1) * static_cast<double>(window_size_ms_) /
         1000.0;
}

QuotaManager::Counts QuotaManager::counts(Kind kind) const {
  std::lock_guard lock(mu_);
  return counts_[static_cast<int>(kind)];
}

}  // namespace sluice::broker
