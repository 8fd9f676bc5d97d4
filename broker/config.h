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

// Kafka's listener security protocols (docs/security.md).
enum class SecurityProtocol : uint8_t { kPlaintext, kSsl, kSaslPlaintext, kSaslSsl };
const char* security_protocol_name(SecurityProtocol p);

// One Kafka listener: `NAME://host:port` in --listeners; the name maps to a security protocol
// (itself when it is one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL, else through
// --listener.security.protocol.map).
struct Listener {
  std::string name;
  SecurityProtocol protocol = SecurityProtocol::kPlaintext;
  HostPort address;
  HostPort advertised;  // empty host: same as address
  bool sasl() const {
    return protocol == SecurityProtocol::kSaslPlaintext || protocol == SecurityProtocol::kSaslSsl;
  }
  bool tls() const {
    return protocol == SecurityProtocol::kSsl || protocol == SecurityProtocol::kSaslSsl;
  }
  const HostPort& advertised_address() const { return advertised.host.empty() ? address : advertised; }
};

struct BrokerConfig {
  int32_t node_id = 0;
  std::string data_dir = "./sluice-data";
  HostPort listen{"127.0.0.1", 9092};
  HostPort advertised;     // empty host: same as listen
  // Every Kafka listener; listeners[0] is `listen`/`advertised` above (the address the broker
  // registers in the cluster and logs). One PLAINTEXT listener unless --listeners names more.
  std::vector<Listener> listeners;
  std::string cluster_id;  // empty: generated once and kept in the data dir
  uint32_t shards = 0;     // 0: one per core

  // Topic defaults (per-topic settings override them).
  int32_t num_partitions = 1;
  int16_t default_replication_factor = -1;  // -1: min(3, live brokers)
  int32_t min_insync_replicas = 1;           // acks=all needs this many in-sync replicas
  int64_t replica_lag_time_max_ms = 30000;   // a voter behind the commit this long leaves the ISR
  int64_t raft_tick_ms = 50;                 // partition Raft groups: one logical tick
  int64_t raft_election_timeout_ms = 600;    // a follower without a leader this long campaigns
  int64_t raft_heartbeat_interval_ms = 150;  // a leader's heartbeat period
  bool raft_quiesce = true;  // idle groups stop heartbeating (liveness from broker pings)
  // A leader's Readies of its own batches are written and advanced at once, reported durable
  // later (ReplicaOptions::async_writes): writes overlap fdatasyncs.
  bool raft_async_writes = false;
  // Moves and balance (broker/reassign.cc, cluster/balance.h).
  bool auto_balance = true;                  // a broker that joins gets its share of replicas
  int32_t move_max_concurrent = 16;          // partitions moving at once
  int64_t move_throttle_bytes = 0;           // catch-up bytes/s to moving replicas; 0: no limit
  bool leader_balancing = true;              // leadership goes back to preferred replicas
  int64_t leader_balancing_delay_ms = 10000;  // ... once caught up this long
  bool auto_create_topics = true;
  int64_t segment_bytes = 1LL << 30;
  int64_t roll_ms = 7LL * 24 * 3600 * 1000;
  int64_t retention_ms = 7LL * 24 * 3600 * 1000;
  int64_t retention_bytes = -1;
  std::string cleanup_policy = "delete";  // log.cleanup.policy (a dynamic broker config only)
  int32_t message_max_bytes = 1048588;
  FlushPolicy flush_policy = FlushPolicy::kEveryBatch;
  int64_t flush_interval_ms = 1000;
  // every-batch: a shard starts at most this many Raft persists of new proposals a second
  // (each ends in an fdatasync); past it they wait their turn and grow (broker/sync_pacer.h).
  // 0: no pacing.
  int64_t sync_max_rate = 1000;
  // Only persists of fewer new bytes than this are paced (0: all of them).
  int64_t sync_pace_below_bytes = 8192;
  // every-batch: fdatasync rounds a partition's log has in flight at once (log::LogConfig::
  // flush_rounds_max); 1 is plain group commit.
  int32_t sync_rounds = 1;
  // Write zeros a few MiB ahead of each active segment's appends instead of fallocate, so an
  // append's fdatasync updates no metadata (log::LogConfig::zero_ahead).
  bool zero_ahead = true;

  // Limits.
  int32_t request_max_bytes = 100 * 1024 * 1024;
  int64_t queued_max_request_bytes = 512LL * 1024 * 1024;  // all request buffers together
  int32_t max_connections = 10000;
  int64_t partitions_max = 100000;  // max.partitions: partitions this broker holds at most
  int64_t idle_timeout_ms = 10 * 60 * 1000;
  // Client quotas' rate window (Kafka's quota.window.num, quota.window.size.seconds): a rate is
  // measured over this many samples of this many seconds each.
  int32_t quota_window_num = 11;
  int32_t quota_window_size_seconds = 1;
  int32_t max_inflight_per_connection = 64;
  // A connection whose requests keep naming partitions of one other shard moves there
  // (broker/connection.h "Moving").
  bool connection_moves = true;
  int32_t group_min_session_timeout_ms = 6000;
  int32_t group_max_session_timeout_ms = 1800000;
  int32_t group_initial_rebalance_delay_ms = 3000;  // Kafka's default
  int32_t offsets_topic_partitions = 8;
  int32_t offsets_topic_replication_factor = -1;  // -1: min(3, controller voters)
  int32_t transaction_state_partitions = 8;       // of __transaction_state (created on first use)
  int32_t transaction_state_replication_factor = -1;  // -1: min(3, controller voters)
  int32_t transaction_max_timeout_ms = 900000;        // Kafka's transaction.max.timeout.ms
  int64_t transactional_id_expiration_ms = 604800000;  // Kafka's, 7 days

  // Storage integrity and operability (broker/data_dir.h, log/README.md).
  bool rebuild_metadata = false;  // rebuild metadata.bin from the partition directories
  bool sweep_orphans = false;     // remove partition directories no topic owns, at start
  bool verify = false;            // check every segment's CRCs, report, exit (no serving)
  int64_t min_free_bytes = -1;    // refuse produce below this free space; -1: 2% (<= 1 GiB)
  int64_t scrub_bytes_per_sec = 4 << 20;  // background CRC check of closed segments; 0: off
  // What the partitions' cold-read caches (index entries and pieces of segments read for
  // Fetches and Raft catch-up older than the window of recent batches) hold in all, shared
  // by the shards.
  int64_t cold_cache_bytes = 128 << 20;
  // Compaction's key map per pass (log.cleaner.dedupe.buffer.size, Kafka's default): 24-byte
  // slots filled to 3/4; a log with more keys than fit is compacted over several passes.
  int64_t cleaner_dedupe_buffer_bytes = 128LL << 20;

  std::string log_level = "info";
  std::string log_format = "text";  // text, or json: one JSON object per line (log shippers)

  // Security (docs/security.md): SASL on SASL_* listeners, TLS on *SSL listeners.
  std::vector<std::string> sasl_mechanisms{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"};
  std::string sasl_bootstrap_user;      // created at start when it has no credential yet
  std::string sasl_bootstrap_password;  // (keep it in the --config file, not on the command line)
  int64_t reauth_ms = 0;                // connections.max.reauth.ms; 0: sessions do not expire
  int64_t failed_auth_delay_ms = 100;   // connection.failed.authentication.delay.ms
  std::string ssl_certificate;          // PEM: the broker's certificate chain
  std::string ssl_key;                  // PEM: its private key
  std::string ssl_ca;                   // PEM: CAs trusted for client certificates
  std::string ssl_client_auth = "none";  // none, requested, required (mTLS)
  // security.inter.broker.protocol: PLAINTEXT, or SSL (mutual TLS on the inter-broker
  // listener and connections, with the certificate, key and CAs above).
  SecurityProtocol inter_broker_protocol = SecurityProtocol::kPlaintext;
  // ACLs (docs/security.md "ACLs"): off, every principal may do everything (as before).
  bool authorizer_enabled = false;        // authorizer.enabled (Kafka: authorizer.class.name)
  bool allow_everyone_if_no_acl = false;  // allow.everyone.if.no.acl.found (Kafka's default)
  std::vector<std::string> super_users;   // super.users: "User:admin;User:ops"

  // Observability (broker/README.md, "Admin HTTP API and metrics").
  HostPort admin_listen{"127.0.0.1", 9644};
  bool admin_enabled = true;      // --admin.listen '' or off: no HTTP listener
  bool admin_listen_set = false;  // given explicitly: failing to bind it stops the start
  int32_t metrics_partition_series_max = 1000;  // per-partition /metrics series at most

  // Cluster (cluster/cluster_node.h). No voters: a one-node cluster of this broker.
  std::string controller_voters;  // "0@host:9093,1@host:9093,2@host:9093"
  HostPort rpc_listen{"127.0.0.1", 9093};
  bool rpc_listen_set = false;  // a one-node cluster opens the inter-broker port only if asked
  HostPort rpc_advertised;      // empty host: same as rpc_listen
  std::string rack;
  int64_t broker_session_timeout_ms = 9000;
  int64_t broker_heartbeat_interval_ms = 500;
  int64_t controller_wait_ms = 120000;  // start-up gives up without a controller quorum
  int64_t controller_snapshot_records = 1000;  // controller log entries between snapshots

  const HostPort& advertised_address() const {
    return advertised.host.empty() ? listen : advertised;
  }
};

// Parses flags (and the --config file they name). On --help/--version the result is an
// error with code 0 and the text to print on stdout; on a bad flag or file, code 2 and a
// message saying what to fix.
Result<BrokerConfig> parse_config(int argc, const char* const* argv);

}  // namespace sluice::broker
