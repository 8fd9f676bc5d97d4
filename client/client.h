// sluice::client::Client: what the producer, the consumer and the CLI share. It owns one
// Boost.Asio I/O thread, one pipelined connection per broker (requests carry correlation
// ids; the broker answers in order), ApiVersions negotiation per connection (each request is
// sent at the highest version both sides support), a metadata cache and bootstrap from a
// broker list. With security.protocol SSL or SASL_SSL each connection is TLS (OpenSSL through
// Boost.Asio); with SASL_* it authenticates (SaslHandshake v1, SaslAuthenticate: PLAIN or
// SCRAM-SHA-256/512) before any other request, and again before the session lifetime the
// broker gave ends (KIP-368).
//
// Thread safety: every public method may be called from any thread. Callbacks passed to
// send() run on the client's I/O thread: keep them short and never call the blocking
// methods (call(), metadata()) from them.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "client/callbacks.h"
#include "client/errors.h"
#include "client/security.h"
#include "common/result.h"
#include "protocol/message_frame.h"

namespace boost::asio {
class io_context;
}

namespace sluice {
class JsonWriter;
}

namespace sluice::client {

struct ClientConfig {
  // "host:port" entries; a comma-separated string may be split with parse_broker_list.
  std::vector<std::string> bootstrap_servers = {"127.0.0.1:9092"};
  std::string client_id = "sluice";
  int request_timeout_ms = 30000;
  int retries = 5;  // for the blocking call() helper (metadata, admin, group requests)
  int retry_backoff_ms = 100;
  int retry_backoff_max_ms = 1000;
  int metadata_max_age_ms = 300000;
  int connect_timeout_ms = 10000;  // TCP connect, TLS handshake, ApiVersions and SASL
  // Log lines at or below log_level go to `log`; without one, warnings and errors go to
  // stderr as "<log_prefix>: warning: ...".
  LogCallback log;
  LogLevel log_level = LogLevel::kInfo;
  std::string log_prefix = "sluice client";
  // `stats` runs every statistics_interval_ms (0, the default: off, no timer, no clock reads)
  // on the I/O thread with the JSON counters; `type` names the owner in it, and
  // `stats_fields` (I/O thread) adds the owner's fields to the top-level object.
  int statistics_interval_ms = 0;
  StatsCallback stats;
  std::string type = "client";
  std::function<void(JsonWriter&)> stats_fields;
  // TLS and SASL (client/security.h); every connection the client makes uses them.
  SecurityConfig security;
};

// Sends one line to config.log (if at or below config.log_level), else warnings and errors to
// stderr.
void log_line(const ClientConfig& config, LogLevel level, const std::string& message);

// "a:1,b:2" -> {"a:1","b:2"}; a missing port means 9092.
std::vector<std::string> parse_broker_list(const std::string& list);

// The client settings a ProducerConfig or ConsumerConfig carries (they name them alike);
// `type` is "producer" or "consumer" (log prefix, stats). The owner adds stats_fields.
template <class OwnerConfig>
ClientConfig client_config_of(const OwnerConfig& config, const std::string& type) {
  ClientConfig cc;
  cc.bootstrap_servers = parse_broker_list(config.bootstrap_servers);
  cc.client_id = config.client_id;
  cc.request_timeout_ms = config.request_timeout_ms;
  cc.log = config.log_cb;
  cc.log_level = static_cast<LogLevel>(config.log_level);
  cc.log_prefix = "sluice " + type;
  cc.statistics_interval_ms = config.statistics_interval_ms;
  cc.stats = config.stats_cb;
  cc.type = type;
  cc.security = config.security;
  return cc;
}

struct BrokerInfo {
  int32_t node_id = -1;
  std::string host;
  int32_t port = 0;
  std::optional<std::string> rack;
};

struct PartitionInfo {
  int32_t partition = 0;
  int32_t leader = -1;
  int32_t leader_epoch = -1;
  int16_t error_code = 0;
  std::vector<int32_t> replicas;
  std::vector<int32_t> isr;
};

struct TopicInfo {
  std::string name;
  int16_t error_code = 0;
  bool internal = false;
  std::vector<PartitionInfo> partitions;  // ascending by partition
};

struct ClusterMetadata {
  std::string cluster_id;
  int32_t controller_id = -1;
  std::vector<BrokerInfo> brokers;
  std::map<std::string, TopicInfo> topics;
  std::chrono::steady_clock::time_point fetched_at{};

  const TopicInfo* topic(const std::string& name) const;
  const BrokerInfo* broker(int32_t node_id) const;
};

// A decoded response; record bytes in the body point into the frame, which it keeps alive.
struct Response {
  std::shared_ptr<const void> frame;
  std::shared_ptr<kafka::DecodedResponse> decoded;
  int16_t api_version = 0;
};

// The element of a request's per-topic list whose `field` equals `key`, appended if missing
// (requests group partitions by topic).
template <class T>
T& entry_for(std::vector<T>& items, std::string T::*field, const std::string& key) {
  for (T& item : items) {
    if (item.*field == key) return item;
  }
  items.emplace_back();
  items.back().*field = key;
  return items.back();
}

// Node ids for send(): a broker id from the metadata, or kAnyBroker.
inline constexpr int32_t kAnyBroker = -1;

class Client {
 public:
  using Callback = std::function<void(Result<Response>)>;

  explicit Client(ClientConfig config);
  ~Client();  // stops the I/O thread; pending callbacks get kClosed
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  const ClientConfig& config() const;
  // log_line() with this client's config.
  void log(LogLevel level, const std::string& message) const;

  // Sends `request` to `node`. `callback` runs once on the I/O thread with the response or
  // an error. With expect_response=false (Produce acks=0) it runs once the request is
  // written. Borrowed record bytes in `request` must stay valid until the callback runs.
  // timeout_ms 0 means request_timeout_ms (JoinGroup waits longer: the rebalance timeout).
  void send(int32_t node, kafka::RequestBody request, Callback callback,
            bool expect_response = true, int timeout_ms = 0);

  // Blocking request; retries network errors and timeouts `retries` times with backoff.
  // Not from the I/O thread.
  Result<Response> call(int32_t node, const kafka::RequestBody& request, int timeout_ms = 0);
  // call() and unpack the response type.
  template <class ResponseT>
  Result<ResponseT> call_as(int32_t node, const kafka::RequestBody& request, int timeout_ms = 0) {
    auto r = call(node, request, timeout_ms);
    if (!r) return unexpected(std::move(r).error());
    return std::get<ResponseT>(r->decoded->body);
  }

  // The negotiated version of `api_key` with `node` (connecting if needed); an error when
  // the broker does not serve it. Blocking.
  Result<int16_t> api_version(int32_t node, kafka::ApiKey api_key);

  // Cached metadata when it covers `topics` and is fresh, else fetched (with retries).
  // all_topics=true asks for every topic; auto_create lets the broker create missing topics
  // (if it is configured to, as Kafka producers allow).
  Result<std::shared_ptr<const ClusterMetadata>> metadata(const std::vector<std::string>& topics,
                                                          bool force_refresh = false,
                                                          bool all_topics = false,
                                                          bool auto_create = false);
  // The cache as it is (null before the first fetch).
  std::shared_ptr<const ClusterMetadata> cached_metadata() const;
  // Asynchronous refresh of `topics`, merged into the cache; `done` runs on the I/O thread.
  void refresh_metadata_async(std::vector<std::string> topics,
                              std::function<void(Result<void>)> done = nullptr);

  boost::asio::io_context& io();
  // Runs `fn` on the I/O thread.
  void post(std::function<void()> fn);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::client
