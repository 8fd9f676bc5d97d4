// Broker settings. Every setting is a command-line flag and can also come from a config file
// (`--config sluiced.toml`: `name = value` lines, TOML-style quoting and comments); flags on
// the command line win over the file. Names follow Kafka's where Kafka has the setting.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"

namespace sluice::broker {

enum class FlushPolicy : uint8_t { kEveryBatch, kInterval, kNever };

struct HostPort {
  std::string host;
  uint16_t port = 0;
  std::string to_string() const { return host + ":" + std::to_string(port); }
};
Result<HostPort> parse_host_port(const std::string& text);

struct BrokerConfig {
  int32_t node_id = 0;
  std::string data_dir = "./sluice-data";
  HostPort listen{"127.0.0.1", 9092};
  HostPort advertised;     // empty host: same as listen
  std::string cluster_id;  // empty: generated once and kept in the data dir
  uint32_t shards = 0;     // 0: one per core

  // Topic defaults (per-topic settings override them).
  int32_t num_partitions = 1;
  int16_t default_replication_factor = 1;
  bool auto_create_topics = true;
  int64_t segment_bytes = 1LL << 30;
  int64_t roll_ms = 7LL * 24 * 3600 * 1000;
  int64_t retention_ms = 7LL * 24 * 3600 * 1000;
  int64_t retention_bytes = -1;
  int32_t message_max_bytes = 1048588;
  FlushPolicy flush_policy = FlushPolicy::kEveryBatch;
  int64_t flush_interval_ms = 1000;

  // Limits.
  int32_t request_max_bytes = 100 * 1024 * 1024;
  int32_t max_connections = 10000;
  int64_t idle_timeout_ms = 10 * 60 * 1000;
  int32_t max_inflight_per_connection = 64;
  int32_t group_min_session_timeout_ms = 6000;
  int32_t group_max_session_timeout_ms = 1800000;
  int32_t group_initial_rebalance_delay_ms = 3000;  // Kafka's default
  int32_t offsets_topic_partitions = 8;

  std::string log_level = "info";

  const HostPort& advertised_address() const {
    return advertised.host.empty() ? listen : advertised;
  }
};

// Parses flags (and the --config file they name). On --help/--version the result is an
// error with code 0 and the text to print on stdout; on a bad flag or file, code 2 and a
// message saying what to fix.
Result<BrokerConfig> parse_config(int argc, const char* const* argv);

}  // namespace sluice::broker
