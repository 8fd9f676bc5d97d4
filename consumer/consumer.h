// sluice::Consumer: an embeddable Kafka consumer, with hand-assigned partitions or a
// consumer group.
//
//   sluice::ConsumerConfig config;
//   config.bootstrap_servers = "127.0.0.1:9092";
//   config.group_id = "billing";                 // empty: assign() only, no group
//   auto consumer = sluice::Consumer::open(config);  // Result<Consumer>; check it
//   consumer->subscribe({"events"});          // or assign({{"events", 0}})
//   while (running) {
//     auto records = consumer->poll(std::chrono::milliseconds(500));
//     if (!records) { std::cerr << records.error().message << "\n"; break; }
//     for (const sluice::ConsumerRecord& r : *records) handle(r);
//   }
//   consumer->close();                        // commits (auto commit) and leaves the group
//
// To commit exactly what was processed (auto commit off), commit in a RebalanceListener's
// on_revoked as well as after processing: the next owner of a partition starts at the last
// commit.
//
// Groups use the classic protocol: FindCoordinator, JoinGroup (with the MEMBER_ID_REQUIRED
// round trip), SyncGroup (the leader member runs the "range" or "roundrobin" assignor over
// the standard "consumer" protocol bytes, so Sluice members share groups with librdkafka and
// Java members), Heartbeat from the consumer's I/O thread, LeaveGroup on close. Assignment is
// eager: every rebalance revokes all partitions (committing first with auto commit).
//
// Thread safety: a Consumer is used from one thread at a time, like Kafka's; heartbeats run
// on its own I/O thread. Every compression codec is decompressed; control batches
// (transactions) are skipped.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "client/callbacks.h"
#include "client/group_metadata.h"
#include "client/security.h"
#include "client/topic_partition.h"
#include "common/result.h"

namespace sluice {

struct ConsumerConfig {
  std::string bootstrap_servers = "127.0.0.1:9092";  // comma-separated host:port
  std::string client_id = "sluice-consumer";
  std::string group_id;  // needed by subscribe() and commits
  // KIP-345 static membership ("group.instance.id"): a member that keeps its assignment
  // across restarts within session_timeout_ms, without a rebalance. It does not leave the
  // group on close() or unsubscribe() (the session timeout removes it); another consumer
  // with the same id fences it (poll() then fails with FENCED_INSTANCE_ID, for good). Empty:
  // a dynamic member.
  std::string group_instance_id;
  // Where to start without a committed offset, or after OFFSET_OUT_OF_RANGE:
  // "earliest", "latest" or "none" (poll() then fails).
  std::string auto_offset_reset = "latest";
  bool enable_auto_commit = true;
  int auto_commit_interval_ms = 5000;
  int session_timeout_ms = 45000;
  int heartbeat_interval_ms = 3000;
  int rebalance_timeout_ms = 60000;
  // Assignors in preference order: "range", "roundrobin".
  std::vector<std::string> assignors = {"range", "roundrobin"};
  int fetch_min_bytes = 1;
  int fetch_max_bytes = 50 << 20;
  int max_partition_fetch_bytes = 1 << 20;
  int fetch_max_wait_ms = 500;
  int max_poll_records = 10000;
  int request_timeout_ms = 30000;
  // "read_uncommitted" (Kafka's Java default): every record up to the high watermark;
  // "read_committed": records of aborted transactions are dropped and reading stops at the
  // last stable offset (before the first transaction still open), as librdkafka's default.
  std::string isolation_level = "read_uncommitted";
  // Warnings the consumer recovers from by itself (e.g. an out-of-range position reset by
  // auto_offset_reset). Default: log_cb at LogLevel::kWarning (which defaults to stderr).
  std::function<void(const std::string&)> on_warning;
  // Log lines of the library (a connection lost and reopened, a retry, a warning) at or
  // below log_level (syslog: 3 error ... 7 debug) go to log_cb; without one, warnings and
  // errors go to stderr.
  LogCallback log_cb;
  int log_level = 6;
  // stats_cb gets a JSON document of the client's counters every statistics_interval_ms
  // (0, the default: off). docs/clients.md lists the fields.
  int statistics_interval_ms = 0;
  StatsCallback stats_cb;
  // TLS and SASL by their Kafka names (security.protocol, ssl.ca.location, sasl.mechanism,
  // sasl.username, ...: client/security.h, docs/security.md).
  client::SecurityConfig security;
};

// Keys, values and headers of consumed records are views into the fetched bytes (no copy per
// record), kept alive by the record's `storage`: see ConsumerRecord.
struct ConsumerHeader {
  std::string_view key;
  std::optional<std::string_view> value;
};

struct ConsumerRecord {
  std::string topic;
  int32_t partition = 0;
  int64_t offset = 0;
  int64_t timestamp_ms = 0;
  bool log_append_time = false;  // timestamp set by the broker rather than the producer
  // Views into the fetch response (or, for a compressed batch, its decompressed records), which
  // `storage` keeps alive: valid as long as this record or a copy of it lives. Copy the bytes
  // (std::string(*r.value)) to keep them longer. A record kept also keeps the rest of the bytes
  // it came with in memory (at most fetch.max.bytes), as librdkafka's messages do.
  std::optional<std::string_view> key;
  std::optional<std::string_view> value;
  std::vector<ConsumerHeader> headers;
  std::shared_ptr<const void> storage;
};

// Sets one field by its librdkafka / Java name ("bootstrap.servers", "group.id",
// "auto.offset.reset", "isolation.level", "enable.auto.commit", "session.timeout.ms",
// "fetch.max.bytes", "statistics.interval.ms", "log_level", ...). Unknown names and bad values fail
// with client::Errc::kInvalidArgument.
Status set_config(ConsumerConfig& config, const std::string& name, const std::string& value);
// Defaults, then every property in order.
Result<ConsumerConfig> consumer_config(const std::map<std::string, std::string>& properties);

// Special offsets for seek().
inline constexpr int64_t kOffsetBeginning = -2;
inline constexpr int64_t kOffsetEnd = -1;

using CommitCallback = std::function<void(const Status&)>;

// Told when the group changes what this member owns (Kafka's ConsumerRebalanceListener). Every
// callback runs on the thread that called poll() (or unsubscribe()/close()), inside that call,
// so it may call commit_sync(), position() and seek(). Assignment is eager: a rebalance
// revokes everything, then assigns the new set.
struct RebalanceListener {
  // After a join: the partitions this member now owns (possibly none).
  std::function<void(const std::vector<TopicPartition>&)> on_assigned;
  // Before a rejoin, unsubscribe() or close(), while the partitions are still owned: commit
  // what was processed here so the next owner starts after it. Runs after the auto commit.
  std::function<void(const std::vector<TopicPartition>&)> on_revoked;
  // Instead of on_revoked when the member was fenced (session expired, unknown member,
  // illegal generation): another member may own them already, so commits would fail.
  std::function<void(const std::vector<TopicPartition>&)> on_lost;
};

class Consumer {
 public:
  // The consumer as a value: `consumer->poll(...)` through the Result, or
  // `sluice::Consumer c = std::move(*consumer);`.
  static Result<Consumer> open(const ConsumerConfig& config);
  // The same on the heap (for callers that keep a pointer).
  static Result<std::unique_ptr<Consumer>> create(const ConsumerConfig& config);
  ~Consumer();  // close()
  Consumer(const Consumer&) = delete;
  Consumer& operator=(const Consumer&) = delete;
  // A moved-from Consumer may only be destroyed or assigned to; assigning closes the old one.
  Consumer(Consumer&& other) noexcept;
  Consumer& operator=(Consumer&& other) noexcept;

  // Hand assignment (replaces any previous one; no group membership). Positions start at the
  // committed offset when group_id is set and one exists, else per auto_offset_reset.
  Status assign(const std::vector<TopicPartition>& partitions);
  // Joins group_id and consumes what the group assigns; the join happens in poll().
  // `listener` hears of assignments and revocations (see RebalanceListener).
  Status subscribe(const std::vector<std::string>& topics, RebalanceListener listener = {});
  void unsubscribe();  // leaves the group
  std::vector<TopicPartition> assignment() const;

  // Records that arrived, at most max_poll_records, waiting up to `timeout` for some. Runs
  // group joins and auto commits. An empty vector means none arrived in time.
  Result<std::vector<ConsumerRecord>> poll(std::chrono::milliseconds timeout);

  // The next poll() of `tp` starts at `offset` (or kOffsetBeginning / kOffsetEnd).
  Status seek(const TopicPartition& tp, int64_t offset);
  Status seek_to_beginning(const std::vector<TopicPartition>& partitions);
  Status seek_to_end(const std::vector<TopicPartition>& partitions);
  // To the first offset whose timestamp is >= timestamp_ms (the end if none).
  Status seek_to_timestamp(const std::vector<TopicPartition>& partitions, int64_t timestamp_ms);
  // The offset of the next record poll() returns for `tp`.
  Result<int64_t> position(const TopicPartition& tp);

  void pause(const std::vector<TopicPartition>& partitions);
  void resume(const std::vector<TopicPartition>& partitions);

  // Commits the positions of every assigned partition (or the given offsets: the next
  // offset to read, i.e. last processed + 1).
  Status commit_sync();
  Status commit_sync(const std::map<TopicPartition, int64_t>& offsets);
  void commit_async(CommitCallback done = nullptr);
  Result<std::map<TopicPartition, int64_t>> committed(
      const std::vector<TopicPartition>& partitions);

  // This member of its group now (group id, generation, member id), for the producer's
  // send_offsets_to_transaction() (KIP-447). Before the first assignment, or without a group,
  // the generation is -1 and the member id empty (the coordinator then checks nothing).
  ConsumerGroupMetadata group_metadata();

  // Log start offset and high watermark of `tp` (ListOffsets).
  Result<std::pair<int64_t, int64_t>> watermark_offsets(const TopicPartition& tp);
  // Partitions of `topic` (metadata).
  Result<int32_t> partition_count(const std::string& topic);

  // Commits (with auto commit), leaves the group, closes connections. Idempotent.
  void close();

  struct Impl;

 private:
  explicit Consumer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice
