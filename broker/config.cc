#include "broker/config.h"

#include <CLI/CLI.hpp>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include "broker/version.h"
#include "cluster/cluster_node.h"
#include "log/format.h"

namespace sluice::broker {
namespace {

std::string trim(std::string s) {
  const auto b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

// Reads `name = value` lines (TOML subset: # comments, quoted or bare values, optional
// [section] headers that prefix names with "section.") into "--name value" arguments.
Result<std::vector<std::string>> config_file_args(const std::string& path) {
  std::ifstream in(path);
  if (!in) return error(2, "cannot read config file '" + path + "'");
  std::vector<std::string> args;
  std::string line, section;
  for (int number = 1; std::getline(in, line); ++number) {
    std::string text = line;
    bool quoted = false;
    for (size_t i = 0; i < text.size(); ++i) {  // strip a comment outside quotes
      if (text[i] == '"') quoted = !quoted;
      if (text[i] == '#' && !quoted) {
        text.resize(i);
        break;
      }
    }
    text = trim(text);
    if (text.empty()) continue;
    if (text.front() == '[' && text.back() == ']') {
      section = trim(text.substr(1, text.size() - 2));
      continue;
    }
    const auto eq = text.find('=');
    if (eq == std::string::npos) {
      return error(2, path + ":" + std::to_string(number) + ": expected 'name = value'");
    }
    std::string key = trim(text.substr(0, eq));
    std::string value = trim(text.substr(eq + 1));
    if (key.size() >= 2 && key.front() == '"' && key.back() == '"') {
      key = key.substr(1, key.size() - 2);
    }
    if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') &&
        value.back() == value.front()) {
      value = value.substr(1, value.size() - 2);
    }
    if (!section.empty()) key = section + "." + key;
    args.push_back("--" + key);
    args.push_back(value);
  }
  return args;
}

}  // namespace

Result<HostPort> parse_host_port(const std::string& input) {
  std::string text = input;  // Kafka's listener form "PLAINTEXT://host:port" is accepted too
  if (const auto scheme = text.find("://"); scheme != std::string::npos) {
    text = text.substr(scheme + 3);
  }
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon + 1 == text.size()) {
    return error(2, "'" + text + "' is not host:port");
  }
  HostPort hp;
  hp.host = text.substr(0, colon);
  if (hp.host.size() >= 2 && hp.host.front() == '[' && hp.host.back() == ']') {
    hp.host = hp.host.substr(1, hp.host.size() - 2);
  }
  try {
    const int port = std::stoi(text.substr(colon + 1));
    if (port < 0 || port > 65535) return error(2, "port out of range in '" + text + "'");
    hp.port = static_cast<uint16_t>(port);
  } catch (const std::exception&) {
    return error(2, "bad port in '" + text + "'");
  }
  if (hp.host.empty()) hp.host = "0.0.0.0";
  return hp;
}

const char* security_protocol_name(SecurityProtocol p) {
  switch (p) {
    case SecurityProtocol::kPlaintext:
      return "PLAINTEXT";
    case SecurityProtocol::kSsl:
      return "SSL";
    case SecurityProtocol::kSaslPlaintext:
      return "SASL_PLAINTEXT";
    case SecurityProtocol::kSaslSsl:
      return "SASL_SSL";
  }
  return "?";
}

namespace {

std::optional<SecurityProtocol> parse_security_protocol(std::string_view name) {
  for (auto p : {SecurityProtocol::kPlaintext, SecurityProtocol::kSsl,
                 SecurityProtocol::kSaslPlaintext, SecurityProtocol::kSaslSsl}) {
    if (name == security_protocol_name(p)) return p;
  }
  return std::nullopt;
}

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, sep);) {
    item = trim(item);
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

// --listeners and --advertised.listeners: "NAME://host:port,..." (or one "host:port", the
// PLAINTEXT listener), and --listener.security.protocol.map "NAME:PROTOCOL,...".
Status parse_listeners(BrokerConfig& c, const std::string& listeners,
                       const std::string& advertised, const std::string& protocol_map) {
  std::map<std::string, SecurityProtocol> protocols;
  for (const std::string& entry : split(protocol_map, ',')) {
    const auto colon = entry.find(':');
    auto p = colon == std::string::npos ? std::nullopt
                                        : parse_security_protocol(entry.substr(colon + 1));
    if (!p) {
      return error(2, "listener.security.protocol.map: '" + entry +
                          "' is not NAME:PROTOCOL (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)");
    }
    protocols[entry.substr(0, colon)] = *p;
  }
  auto parse_list = [](const std::string& text,
                       const char* flag) -> Result<std::vector<std::pair<std::string, HostPort>>> {
    std::vector<std::pair<std::string, HostPort>> out;
    if (text.find("://") == std::string::npos) {
      if (text.empty()) return out;
      auto hp = parse_host_port(text);
      if (!hp) return unexpected(std::move(hp).error());
      out.emplace_back("PLAINTEXT", *hp);
      return out;
    }
    for (const std::string& entry : split(text, ',')) {
      const auto sep = entry.find("://");
      if (sep == std::string::npos || sep == 0) {
        return error(2, std::string(flag) + ": '" + entry + "' is not NAME://host:port");
      }
      auto hp = parse_host_port(entry.substr(sep + 3));
      if (!hp) return unexpected(std::move(hp).error());
      for (const auto& [name, _] : out) {
        if (name == entry.substr(0, sep)) {
          return error(2, std::string(flag) + ": listener " + name + " is named twice");
        }
      }
      out.emplace_back(entry.substr(0, sep), *hp);
    }
    return out;
  };
  auto bound = parse_list(listeners, "listeners");
  if (!bound) return unexpected(std::move(bound).error());
  if (bound->empty()) return error(2, "listeners: at least one listener is needed");
  auto adv = parse_list(advertised, "advertised.listeners");
  if (!adv) return unexpected(std::move(adv).error());
  c.listeners.clear();
  for (auto& [name, address] : *bound) {
    Listener l;
    l.name = name;
    l.address = address;
    if (auto it = protocols.find(name); it != protocols.end()) {
      l.protocol = it->second;
    } else if (auto p = parse_security_protocol(name)) {
      l.protocol = *p;
    } else {
      return error(2, "listener " + name +
                          " has no security protocol: name it PLAINTEXT, SSL, SASL_PLAINTEXT or "
                          "SASL_SSL, or map it in --listener.security.protocol.map");
    }
    c.listeners.push_back(std::move(l));
  }
  // A bare host:port advertises the first listener, as --advertised did before.
  const bool bare = !advertised.empty() && advertised.find("://") == std::string::npos;
  for (auto& [name, address] : *adv) {
    Listener* l = nullptr;
    for (auto& candidate : c.listeners) {
      if (candidate.name == name || bare) {
        l = &candidate;
        break;
      }
    }
    if (!l) return error(2, "advertised.listeners names " + name + ", which is not a listener");
    l->advertised = address;
  }
  c.listen = c.listeners.front().address;
  c.advertised = c.listeners.front().advertised;
  return {};
}

}  // namespace

Result<BrokerConfig> parse_config(int argc, const char* const* argv) {
  BrokerConfig c;
  CLI::App app{
      "sluiced: the Sluice broker. A Kafka-compatible, replicated commit log.\n"
      "With no arguments it runs one broker with its data in ./sluice-data, serving\n"
      "Kafka clients on 127.0.0.1:9092.",
      "sluiced"};
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.get_formatter()->column_width(44);
  std::string config_path, listen = c.listen.to_string(), advertised, flush = "every-batch";
  bool version = false;
  app.add_option("--config", config_path,
                 "Read settings from this file ('name = value' lines); flags override it");
  app.add_flag("--version", version, "Print the version and exit");
  app.add_option("--node.id,--node-id", c.node_id, "This broker's node id")->capture_default_str();
  app.add_option("--data-dir,--log.dirs", c.data_dir, "Where partitions and metadata are kept")
      ->capture_default_str();
  std::string protocol_map;
  app.add_option("--listen,--listeners", listen,
                 "Kafka listeners: host:port (PLAINTEXT), or NAME://host:port,... as Kafka's "
                 "listeners (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL or a mapped name)")
      ->capture_default_str();
  app.add_option("--advertised,--advertised.listeners", advertised,
                 "Addresses clients are told to connect to: host:port (the first listener) or "
                 "NAME://host:port,... (default: each listener's own)");
  app.add_option("--listener.security.protocol.map", protocol_map,
                 "NAME:PROTOCOL,... for listeners not named after their security protocol");
  std::string mechanisms = "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512";
  app.add_option("--sasl.enabled.mechanisms", mechanisms,
                 "SASL mechanisms offered on SASL_* listeners")
      ->capture_default_str();
  app.add_option("--sasl.bootstrap.user", c.sasl_bootstrap_user,
                 "A user whose SCRAM credentials are created at start if missing (the first "
                 "administrator)");
  app.add_option("--sasl.bootstrap.password", c.sasl_bootstrap_password,
                 "Its password (put it in the --config file: command lines are visible to "
                 "every local user)");
  app.add_option("--connections.max.reauth.ms", c.reauth_ms,
                 "SASL session lifetime told to clients (KIP-368); a connection that has not "
                 "re-authenticated by then is closed at its next request (0: no expiry)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  app.add_option("--connection.failed.authentication.delay.ms", c.failed_auth_delay_ms,
                 "Delay before the answer to a failed authentication (and the close)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{60000}));
  app.add_option("--authorizer.enabled", c.authorizer_enabled,
                 "Enforce ACLs (Kafka's authorizer.class.name); off, every principal may do "
                 "everything")
      ->capture_default_str();
  app.add_option("--allow.everyone.if.no.acl.found", c.allow_everyone_if_no_acl,
                 "With the authorizer: a resource no ACL names is open to everyone (else only "
                 "super users may use it)")
      ->capture_default_str();
  std::string super_users;
  app.add_option("--super.users", super_users,
                 "Principals allowed everything, separated by ';' (User:admin;User:ops)");
  app.add_option("--ssl.certificate.location,--ssl.keystore.certificate.chain", c.ssl_certificate,
                 "PEM certificate chain of the broker (SSL and SASL_SSL listeners)");
  app.add_option("--ssl.key.location,--ssl.keystore.key", c.ssl_key, "PEM private key of the broker");
  app.add_option("--ssl.ca.location,--ssl.truststore.location", c.ssl_ca,
                 "PEM CA certificates trusted for client certificates (mTLS)");
  app.add_option("--ssl.client.auth", c.ssl_client_auth,
                 "Client certificates: none, requested or required (mTLS; the certificate's "
                 "subject is the principal)")
      ->capture_default_str()
      ->check(CLI::IsMember({"none", "requested", "required"}));
  std::string inter_broker_protocol = "PLAINTEXT";
  app.add_option("--security.inter.broker.protocol", inter_broker_protocol,
                 "Between brokers (the --rpc.listen listener and the connections to it): "
                 "PLAINTEXT, or SSL: mutual TLS with ssl.certificate.location, ssl.key.location "
                 "and ssl.ca.location (every broker's certificate signed by a CA in it)")
      ->capture_default_str();
  app.add_option("--cluster.id", c.cluster_id, "Cluster id (default: generated and kept)");
  app.add_option("--shards", c.shards, "Shard threads (0: one per core)")->capture_default_str();
  app.add_option("--num.partitions", c.num_partitions, "Partitions of auto-created topics")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  app.add_option("--default.replication.factor", c.default_replication_factor,
                 "Replication factor of topics created without one (-1: min(3, live brokers))")
      ->capture_default_str();
  app.add_option("--min.insync.replicas", c.min_insync_replicas,
                 "In-sync replicas an acks=all write needs (topics may set their own)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  app.add_option("--replica.lag.time.max.ms", c.replica_lag_time_max_ms,
                 "A replica that has not reached the leader's commit index for this long is out "
                 "of sync")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{100}, int64_t{3600000}));
  app.add_option("--raft.tick.ms", c.raft_tick_ms, "Tick of the partitions' Raft groups")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{5}, int64_t{10000}));
  app.add_option("--raft.election.timeout.ms", c.raft_election_timeout_ms,
                 "A partition follower that hears from no leader for this long (to twice as "
                 "long, randomized) starts an election")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{20}, int64_t{600000}));
  app.add_option("--raft.heartbeat.interval.ms", c.raft_heartbeat_interval_ms,
                 "How often a partition leader heartbeats its followers")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{5}, int64_t{60000}));
  app.add_option("--raft.quiesce", c.raft_quiesce,
                 "Idle partitions led here whose replicas all hold everything stop heartbeating "
                 "(brokers ping each other every heartbeat interval, and a broker silent for an "
                 "election timeout wakes the groups it leads or follows)")
      ->capture_default_str();
  app.add_option("--raft.async.writes", c.raft_async_writes,
                 "A partition leader writes its next produce batches while the previous ones "
                 "are being synced (each is acknowledged once its own fdatasync completed); "
                 "more produce throughput for more CPU per byte")
      ->capture_default_str();
  std::string autobalancing = c.auto_balance ? "node_add" : "off";
  app.add_option("--partition.autobalancing", autobalancing,
                 "node_add: a broker that joins the cluster gets its share of replicas, moved "
                 "from the others; off: replicas move only when asked (decommission, balance, "
                 "reassignment)")
      ->capture_default_str()
      ->check(CLI::IsMember({"node_add", "off"}));
  app.add_option("--replica.move.max.concurrent", c.move_max_concurrent,
                 "Partitions the balancer moves at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000));
  app.add_option("--replica.move.throttle.bytes", c.move_throttle_bytes,
                 "Bytes per second this broker sends to replicas being added by moves (their "
                 "catch-up); 0: no limit")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  app.add_option("--auto.leader.rebalance.enable", c.leader_balancing,
                 "Hand partition leadership back to preferred replicas once they are caught up")
      ->capture_default_str();
  app.add_option("--leader.balancing.delay.ms", c.leader_balancing_delay_ms,
                 "How long a preferred replica must be caught up before leadership goes back")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{86400000}));
  app.add_option("--auto.create.topics.enable", c.auto_create_topics,
                 "Create topics named in Metadata requests")
      ->capture_default_str();
  app.add_option("--log.cleaner.dedupe.buffer.size", c.cleaner_dedupe_buffer_bytes,
                 "Memory for the key map of a compaction pass (32 bytes a key; more keys take "
                 "more passes)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1} << 16, int64_t{1} << 36));
  app.add_option("--log.segment.bytes", c.segment_bytes, "Segment size before a roll")
      ->capture_default_str()
      ->check(CLI::Range(static_cast<int64_t>(log::kSegmentBytesMin),
                         static_cast<int64_t>(log::kSegmentBytesMax)));
  app.add_option("--log.roll.ms", c.roll_ms, "Segment age before a roll")->capture_default_str();
  app.add_option("--retention.ms,--log.retention.ms", c.retention_ms,
                 "Delete segments older than this (-1: keep)")
      ->capture_default_str();
  app.add_option("--retention.bytes,--log.retention.bytes", c.retention_bytes,
                 "Delete old segments beyond this size per partition (-1: keep)")
      ->capture_default_str();
  app.add_option("--message.max.bytes", c.message_max_bytes, "Largest record batch accepted")
      ->capture_default_str()
      ->check(CLI::Range(1024, static_cast<int32_t>(log::kBatchBytesMax)));
  app.add_option("--log.flush", flush,
                 "When appends are made durable: every-batch (before acks), interval, never")
      ->capture_default_str()
      ->check(CLI::IsMember({"every-batch", "interval", "never"}));
  app.add_option("--log.flush.interval.ms", c.flush_interval_ms, "Flush period for 'interval'")
      ->capture_default_str();
  app.add_option("--log.sync.max.rate", c.sync_max_rate,
                 "every-batch: fdatasync rounds of new produce data a shard starts per second at "
                 "most; past it appends wait (up to about 1/rate) and share larger syncs (0: no "
                 "limit)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1'000'000}));
  app.add_option("--log.sync.pace.below.bytes", c.sync_pace_below_bytes,
                 "every-batch: only persists that carry fewer bytes of new produce data than "
                 "this wait for --log.sync.max.rate (0: all of them)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 30));
  app.add_option("--log.sync.rounds", c.sync_rounds,
                 "every-batch: fdatasync rounds a partition has in flight at once; appends that "
                 "complete while one runs start the next beside it (1: one at a time, later "
                 "appends share the next)")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  app.add_option(
         "--log.zero.ahead", c.zero_ahead,
         "Write zeros (and sync them) a few MiB ahead of each partition's appends, so that "
         "an append's fdatasync finds its blocks written and updates no file metadata; "
         "while its syncs are small; writes those bytes to the disk twice (false: fallocate ahead)")
      ->capture_default_str();
  app.add_option("--socket.request.max.bytes", c.request_max_bytes, "Largest request accepted")
      ->capture_default_str()
      ->check(CLI::Range(1024, 1 << 30));
  app.add_option("--queued.max.request.bytes", c.queued_max_request_bytes,
                 "Request bytes held at once by all connections; reading pauses beyond it "
                 "(at least socket.request.max.bytes)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1024}, int64_t{1} << 40));
  app.add_option("--max.connections", c.max_connections, "Client connections at most")
      ->capture_default_str();
  app.add_option("--max.partitions", c.partitions_max,
                 "Partitions (replicas) this broker holds at most; CreateTopics and "
                 "CreatePartitions beyond it get INVALID_PARTITIONS")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{10000000}));
  app.add_option("--connections.max.idle.ms", c.idle_timeout_ms, "Close connections idle this long")
      ->capture_default_str();
  app.add_option("--quota.window.num", c.quota_window_num,
                 "Client quotas: samples in a rate's window (Kafka's quota.window.num)")
      ->capture_default_str()
      ->check(CLI::Range(2, 100));
  app.add_option("--quota.window.size.seconds", c.quota_window_size_seconds,
                 "Client quotas: seconds per sample (Kafka's quota.window.size.seconds)")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  app.add_option("--max.inflight.requests", c.max_inflight_per_connection,
                 "Requests read ahead per connection")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  app.add_option("--connection.moves", c.connection_moves,
                 "Move a connection to the shard of the partitions its requests keep naming")
      ->capture_default_str();
  app.add_option("--group.min.session.timeout.ms", c.group_min_session_timeout_ms,
                 "Shortest consumer session timeout accepted")
      ->capture_default_str();
  app.add_option("--group.max.session.timeout.ms", c.group_max_session_timeout_ms,
                 "Longest consumer session timeout accepted")
      ->capture_default_str();
  app.add_option("--group.initial.rebalance.delay.ms", c.group_initial_rebalance_delay_ms,
                 "Wait this long for more members before the first rebalance of an empty group "
                 "(again for each newcomer, at most the rebalance timeout)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1800000));
  app.add_option("--offsets.topic.replication.factor", c.offsets_topic_replication_factor,
                 "Replicas of __consumer_offsets (-1: min(3, controller voters))")
      ->capture_default_str();
  app.add_option("--offsets.topic.num.partitions", c.offsets_topic_partitions,
                 "Partitions of __consumer_offsets")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  app.add_option("--transaction.state.log.num.partitions", c.transaction_state_partitions,
                 "Partitions of __transaction_state (created when the first transactional "
                 "producer starts)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  app.add_option("--transaction.state.log.replication.factor",
                 c.transaction_state_replication_factor,
                 "Replicas of __transaction_state (-1: min(3, controller voters))")
      ->capture_default_str();
  app.add_option("--transaction.max.timeout.ms", c.transaction_max_timeout_ms,
                 "The longest transaction timeout a producer may ask for")
      ->capture_default_str()
      ->check(CLI::Range(1, 2147483647));
  app.add_option("--transactional.id.expiration.ms", c.transactional_id_expiration_ms,
                 "A transactional id with no transaction open and unused this long is "
                 "forgotten (its producer id with it)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, INT64_MAX));
  std::string rpc_listen, rpc_advertised;
  app.add_option("--controller.voters,--controller.quorum.voters", c.controller_voters,
                 "Controller quorum: ID@HOST:PORT,... of inter-broker listeners (none: this "
                 "broker is a one-node cluster)");
  app.add_option("--rpc.listen", rpc_listen,
                 "Inter-broker listener (host:port; default 127.0.0.1:9093 in a cluster)");
  app.add_option("--rpc.advertised", rpc_advertised,
                 "Inter-broker address other brokers use (default: --rpc.listen)");
  app.add_option("--rack,--broker.rack", c.rack, "This broker's rack, for replica placement");
  app.add_option("--broker.session.timeout.ms", c.broker_session_timeout_ms,
                 "A broker silent this long is fenced")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{500}, int64_t{3600000}));
  app.add_option("--broker.heartbeat.interval.ms", c.broker_heartbeat_interval_ms,
                 "How often a broker heartbeats to the controller")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{10}, int64_t{60000}));
  app.add_option("--controller.snapshot.records", c.controller_snapshot_records,
                 "Controller log entries between two snapshots of the metadata image")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{2}, int64_t{100000000}));
  app.add_option("--controller.wait.ms", c.controller_wait_ms,
                 "Start-up waits this long for the controller quorum")
      ->capture_default_str();
  app.add_flag("--rebuild-metadata", c.rebuild_metadata,
               "Rebuild the topics from the partition directories when the controller state is "
               "lost (each partition on this broker, default settings)");
  app.add_flag("--sweep-orphans", c.sweep_orphans,
               "At start, delete partition directories that no topic owns (they are kept and "
               "reported otherwise)");
  app.add_flag("--verify", c.verify,
               "Check the CRC of every batch of every partition, report damage, and exit "
               "(status 0: clean, 1: damage found); takes the data directory's lock");
  app.add_option("--log.dir.min.free.bytes", c.min_free_bytes,
                 "Refuse produce (KAFKA_STORAGE_ERROR) while the data volume has less free "
                 "space, so deletes and retention can still run (-1: 2% of it, at most 1 GiB)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{-1}, int64_t{1} << 50));
  app.add_option("--log.scrub.bytes.per.sec", c.scrub_bytes_per_sec,
                 "Rate at which closed segments are re-read and their CRCs checked in the "
                 "background (0: never)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  app.add_option("--log.cold.cache.bytes", c.cold_cache_bytes,
                 "Memory for reads older than each partition's recent batches (index entries "
                 "and pieces of segments, for catch-up consumers and followers), for the whole "
                 "broker: past it, the least recently used partitions' caches are dropped")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1} << 20, int64_t{1} << 40));
  std::string admin_listen;
  app.add_option("--admin.listen", admin_listen,
                 "Admin HTTP API and Prometheus /metrics (host:port; port 0: any free port; "
                 "'' or off: disabled) [default: 127.0.0.1:9644]");
  app.add_option("--metrics.partition.series.max", c.metrics_partition_series_max,
                 "Per-partition series in /metrics at most (the first partitions by topic and "
                 "index; per-topic totals always cover all)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000000));
  app.add_option("--log-level", c.log_level, "trace, debug, info, warn, error")
      ->capture_default_str()
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  app.add_option("--log-format", c.log_format,
                 "text, or json: one object per line with ts, level, thread and msg")
      ->capture_default_str()
      ->check(CLI::IsMember({"text", "json"}));

  std::vector<std::string> args(argv + 1, argv + argc);
  // The config file's settings go first so that command-line flags win.
  for (size_t i = 0; i < args.size(); ++i) {
    std::string path;
    if (args[i] == "--config" && i + 1 < args.size()) {
      path = args[i + 1];
    } else if (args[i].rfind("--config=", 0) == 0) {
      path = args[i].substr(9);
    }
    if (path.empty()) continue;
    auto file_args = config_file_args(path);
    if (!file_args) return unexpected(std::move(file_args).error());
    args.insert(args.begin(), file_args->begin(), file_args->end());
    break;
  }
  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 parses a reversed list
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp&) {
    return error(0, app.help());
  } catch (const CLI::ParseError& e) {
    return error(2, std::string(e.what()) + "\nRun 'sluiced --help' for the settings.");
  }
  if (version) return error(0, std::string("sluiced ") + kVersion + "\n");
  if (c.queued_max_request_bytes < c.request_max_bytes) {
    return error(2, "queued.max.request.bytes (" + std::to_string(c.queued_max_request_bytes) +
                        ") must be at least socket.request.max.bytes (" +
                        std::to_string(c.request_max_bytes) + ")");
  }
  if (auto s = parse_listeners(c, listen, advertised, protocol_map); !s) {
    return unexpected(std::move(s).error());
  }
  c.sasl_mechanisms = split(mechanisms, ',');
  for (const std::string& m : c.sasl_mechanisms) {
    if (m != "PLAIN" && m != "SCRAM-SHA-256" && m != "SCRAM-SHA-512") {
      return error(2, "sasl.enabled.mechanisms: " + m +
                          " is not supported (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)");
    }
  }
  for (const std::string& p : split(super_users, ';')) {
    if (p.empty()) continue;
    if (p.find(':') == std::string::npos || p.front() == ':' || p.back() == ':') {
      return error(2, "super.users: '" + p + "' is not a principal of the form User:name");
    }
    c.super_users.push_back(p);
  }
  if (c.sasl_bootstrap_user.empty() != c.sasl_bootstrap_password.empty()) {
    return error(2, "sasl.bootstrap.user and sasl.bootstrap.password go together");
  }
  for (const Listener& l : c.listeners) {
    if (l.tls() && (c.ssl_certificate.empty() || c.ssl_key.empty())) {
      return error(2, "listener " + l.name +
                          " uses TLS: set ssl.certificate.location and ssl.key.location");
    }
  }
  if (c.ssl_client_auth != "none" && c.ssl_ca.empty()) {
    return error(2, "ssl.client.auth=" + c.ssl_client_auth + " needs ssl.ca.location");
  }
  if (inter_broker_protocol == "SSL") {
    c.inter_broker_protocol = SecurityProtocol::kSsl;
    if (c.ssl_certificate.empty() || c.ssl_key.empty() || c.ssl_ca.empty()) {
      return error(2,
                   "security.inter.broker.protocol=SSL needs ssl.certificate.location, "
                   "ssl.key.location and ssl.ca.location (TLS between brokers is mutual)");
    }
  } else if (inter_broker_protocol != "PLAINTEXT") {
    return error(2, "security.inter.broker.protocol: '" + inter_broker_protocol +
                        "' is not supported (PLAINTEXT or SSL; SASL between brokers is not)");
  }
  // An address flag given as text: parsed into `out` when set; true when it was set.
  auto address_flag = [](const std::string& text, HostPort& out) -> Result<bool> {
    if (text.empty()) return false;
    auto parsed = parse_host_port(text);
    if (!parsed) return unexpected(std::move(parsed).error());
    out = *parsed;
    return true;
  };
  if (auto voters = cluster::parse_voters(c.controller_voters); !voters) {
    return error(2, voters.error().message + " (--controller.voters)");
  }
  auto listen_set = address_flag(rpc_listen, c.rpc_listen);
  if (!listen_set) return unexpected(std::move(listen_set).error());
  c.rpc_listen_set = *listen_set;
  if (auto a = address_flag(rpc_advertised, c.rpc_advertised); !a) {
    return unexpected(std::move(a).error());
  }
  c.auto_balance = autobalancing == "node_add";
  // The default admin address is best effort (a second broker on the host warns and goes on
  // without it); one given explicitly must be bound.
  const bool admin_given = app.count("--admin.listen") > 0;
  if (admin_given && (admin_listen.empty() || admin_listen == "off")) {
    c.admin_enabled = false;
  } else if (admin_given) {
    if (auto a = address_flag(admin_listen, c.admin_listen); !a) {
      return unexpected(std::move(a).error());
    }
    c.admin_listen_set = true;
  }
  c.flush_policy = flush == "never"      ? FlushPolicy::kNever
                   : flush == "interval" ? FlushPolicy::kInterval
                                         : FlushPolicy::kEveryBatch;
  return c;
}

}  // namespace sluice::broker
