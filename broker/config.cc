#include "broker/config.h"

#include <CLI/CLI.hpp>
#include <fstream>
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
  app.add_option("--listen,--listeners", listen, "Address for Kafka clients (host:port)")
      ->capture_default_str();
  app.add_option("--advertised,--advertised.listeners", advertised,
                 "Address clients are told to connect to (default: --listen)");
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
  app.add_option("--connections.max.idle.ms", c.idle_timeout_ms, "Close connections idle this long")
      ->capture_default_str();
  app.add_option("--max.inflight.requests", c.max_inflight_per_connection,
                 "Requests read ahead per connection")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
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
  auto l = parse_host_port(listen);
  if (!l) return unexpected(std::move(l).error());
  c.listen = *l;
  // An address flag given as text: parsed into `out` when set; true when it was set.
  auto address_flag = [](const std::string& text, HostPort& out) -> Result<bool> {
    if (text.empty()) return false;
    auto parsed = parse_host_port(text);
    if (!parsed) return unexpected(std::move(parsed).error());
    out = *parsed;
    return true;
  };
  if (auto a = address_flag(advertised, c.advertised); !a) return unexpected(std::move(a).error());
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
