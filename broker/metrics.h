// What /metrics reports, kept where it happens, and the text it is served as.
//
// Counters live per shard (ShardMetrics, a member of ShardState): only that shard's thread
// touches them, without locks or atomics. A scrape posts to every shard, copies each one's
// counters there, and sums the copies (broker/admin.cc), so the hot path pays an increment.
//
// PromWriter writes the Prometheus text exposition format (version 0.0.4): # HELP and # TYPE
// once per family, then its samples; label values and help text escaped; histograms as
// cumulative _bucket{le="..."} lines ending at +Inf, then _sum and _count.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/histogram.h"
#include "common/json.h"  // JsonWriter, for the admin API

namespace sluice::broker {

// Kafka API keys and versions a counter slot exists for; requests beyond (never served) are
// counted in `unknown_requests`.
inline constexpr size_t kApiKeysMax = 80;
inline constexpr size_t kApiVersionsMax = 24;

struct ApiMetrics {
  std::array<uint64_t, kApiVersionsMax> requests{};
  std::array<uint64_t, kApiVersionsMax> errors{};
  LatencyHistogram latency;  // from the request read to its reply handed to the connection
};

// Traffic of one partition through this broker, counted on the shard that saw it: bytes and
// records in on the partition's shard (appended by Produce), out on the connection's shard
// (handed to a Fetch response).
struct PartitionTraffic {
  uint64_t bytes_in = 0;
  uint64_t records_in = 0;
  uint64_t bytes_out = 0;
  uint64_t records_out = 0;
};

using PartitionKey = std::pair<std::string, int32_t>;  // topic, partition

struct ShardMetrics {
  std::array<ApiMetrics, kApiKeysMax> apis;  // by API key
  uint64_t unknown_requests = 0;
  // Entries outlive a partition's stay on this broker (counters must not go back); a scrape
  // drops those of deleted topics.
  std::map<PartitionKey, PartitionTraffic> traffic;
  uint64_t raft_campaigns = 0;   // elections this shard's replicas started (pre-vote rounds)
  uint64_t raft_terms_seen = 0;  // new terms this shard's replicas moved to (elections)

  void request_done(int16_t api_key, int16_t version, bool error,
                    std::chrono::nanoseconds elapsed) {
    if (api_key < 0 || static_cast<size_t>(api_key) >= kApiKeysMax || version < 0 ||
        static_cast<size_t>(version) >= kApiVersionsMax) {
      ++unknown_requests;
      return;
    }
    ApiMetrics& a = apis[static_cast<size_t>(api_key)];
    ++a.requests[static_cast<size_t>(version)];
    if (error) ++a.errors[static_cast<size_t>(version)];
    a.latency.record(elapsed);
  }
  PartitionTraffic& partition(const std::string& topic, int32_t index) {
    return traffic[PartitionKey(topic, index)];
  }
};

// The ShardMetrics of the shard running on this thread; null on other threads (the cluster
// thread, main). Set once when a shard starts.
ShardMetrics*& this_shard_metrics();

using Label = std::pair<std::string_view, std::string_view>;

class PromWriter {
 public:
  // Starts a family; its samples follow before the next family starts. `type` is counter,
  // gauge or histogram.
  void family(std::string_view name, std::string_view type, std::string_view help);
  void sample(std::string_view name, std::initializer_list<Label> labels, double value);
  void sample(std::string_view name, std::initializer_list<Label> labels, uint64_t value);
  void sample(std::string_view name, std::initializer_list<Label> labels, int64_t value);
  // name_bucket{labels..., le="..."} (seconds, cumulative), name_sum (seconds), name_count.
  void histogram(std::string_view name, std::initializer_list<Label> labels,
                 const LatencyHistogram& h);
  const std::string& text() const { return out_; }
  std::string take() { return std::move(out_); }

 private:
  void begin(std::string_view name, std::string_view suffix, std::initializer_list<Label> labels,
             std::string_view le = {});
  std::string out_;
};

}  // namespace sluice::broker
