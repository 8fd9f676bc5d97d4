// sluice::Producer: an embeddable, asynchronous Kafka producer.
//
//   sluice::ProducerConfig config;
//   config.bootstrap_servers = "127.0.0.1:9092";
//   auto producer = sluice::Producer::open(config);        // Result<Producer>
//   if (!producer) { std::cerr << producer.error().message; return 1; }
//   auto done = producer->send({.topic = "events", .key = "k", .value = "hello"});
//   sluice::RecordMetadata md = done.get();                // md.ok(), md.partition, md.offset
//   producer->flush();
//
// Records are batched per partition (linger_ms, batch_size) and sent by the producer's I/O
// thread, at most max_in_flight requests per partition. Idempotence is on by default: the
// producer gets a producer id (InitProducerId) and numbers its batches, so a batch retried
// after a lost answer or a broker restart is written once. Keyed records go to
// murmur2(key) % partitions, as the Java client and librdkafka's murmur2_random put them;
// keyless records stick to one partition per batch. With a transactional_id the producer
// writes transactions (init_transactions(), begin/commit/abort_transaction(),
// send_offsets_to_transaction()).
//
// Thread safety: every method may be called from any thread. Callbacks run on the producer's
// I/O thread; keep them short and do not call flush() or close() from them.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "client/callbacks.h"
#include "client/group_metadata.h"
#include "client/security.h"
#include "client/topic_partition.h"
#include "common/result.h"

namespace sluice {

struct ProducerConfig {
  std::string bootstrap_servers = "127.0.0.1:9092";  // comma-separated host:port
  std::string client_id = "sluice-producer";
  // -1 ("all"): the leader answers once the batch is committed; 1: once the leader wrote it;
  // 0: no answer (offsets unknown, errors lost).
  int acks = -1;
  // "none" (the default: cheapest on CPU and on loopback), "zstd", "lz4", "gzip", "snappy".
  std::string compression = "none";
  int compression_level = 0;  // 0: the codec's default
  int linger_ms = 5;
  int batch_size = 1 << 20;            // bytes of records per partition batch
  int64_t buffer_memory = 64LL << 20;  // bytes of unsent and unacknowledged records
  // When the buffer is full: block send() up to max_block_ms (true), or fail at once.
  bool block_on_buffer_full = true;
  int max_block_ms = 60000;
  int max_in_flight = 5;  // requests per partition
  // On by default; needs acks=-1 (with other acks it is turned off).
  bool enable_idempotence = true;
  int request_timeout_ms = 30000;
  int delivery_timeout_ms = 120000;  // give up on a record (with an error) after this
  int retry_backoff_ms = 100;
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
  // Set: a transactional producer (init_transactions() before the first transaction; needs
  // acks=-1 and idempotence). The broker aborts a transaction open longer than
  // transaction_timeout_ms.
  std::string transactional_id;
  int transaction_timeout_ms = 60000;
};

struct Header {
  std::string key;
  std::optional<std::string> value;
};

struct ProducerRecord {
  std::string topic;
  std::optional<int32_t> partition;  // unset: the partitioner chooses
  std::optional<std::string> key;
  std::optional<std::string> value;
  std::vector<Header> headers;
  std::optional<int64_t> timestamp_ms;  // unset: now
};

struct RecordMetadata {
  std::string topic;
  int32_t partition = -1;
  int64_t offset = -1;  // -1 with acks=0
  int64_t timestamp_ms = -1;
  Error error;  // code 0: delivered; else client::Errc or a Kafka error code
  bool ok() const { return error.code == 0; }
};

using DeliveryCallback = std::function<void(const RecordMetadata&)>;

// Sets one field by its librdkafka / Java name, for configuration kept in files: the field
// names with '.' for '_' ("bootstrap.servers", "client.id", "linger.ms", "batch.size",
// "enable.idempotence", "compression.type", "statistics.interval.ms", "log_level", ...);
// "acks" takes "all". Unknown names and bad
// values fail with client::Errc::kInvalidArgument naming the known ones.
Status set_config(ProducerConfig& config, const std::string& name, const std::string& value);
// Defaults, then every property in order.
Result<ProducerConfig> producer_config(const std::map<std::string, std::string>& properties);

class Producer {
 public:
  // Connects, checks the cluster is reachable and, with idempotence, obtains a producer id.
  // The producer as a value: `producer->send(...)` through the Result, or
  // `sluice::Producer p = std::move(*producer);`.
  static Result<Producer> open(const ProducerConfig& config);
  // The same on the heap (for callers that keep a pointer).
  static Result<std::unique_ptr<Producer>> create(const ProducerConfig& config);
  ~Producer();  // close() with the delivery timeout
  Producer(const Producer&) = delete;
  Producer& operator=(const Producer&) = delete;
  // A moved-from Producer may only be destroyed or assigned to; assigning closes the old one.
  Producer(Producer&& other) noexcept;
  Producer& operator=(Producer&& other) noexcept;

  // Queues a record. The future (never throwing) yields its metadata or error once the
  // broker answered (or at once with acks=0 once written). When the buffer is full, blocks
  // up to max_block_ms or fails with client::Errc::kBufferFull, per the config.
  std::future<RecordMetadata> send(ProducerRecord record);
  // The same with a callback instead of a future (cheaper). Returns an error only when the
  // record could not be queued (closed, buffer full, unknown topic...); the callback then
  // does not run.
  Status send(ProducerRecord record, DeliveryCallback callback);

  // Sends everything queued now and waits until each record was answered.
  Status flush(std::chrono::milliseconds timeout = std::chrono::milliseconds::max());
  // flush(), then stops. Records still unsent after `timeout` fail with kClosed.
  void close(std::chrono::milliseconds timeout = std::chrono::milliseconds(30000));

  // Partitions of `topic` (fetching metadata if needed).
  Result<int32_t> partition_count(const std::string& topic);

  // Transactions (transactional_id set), as Kafka's producer API: records sent between
  // begin_transaction() and commit_transaction() are read by read_committed consumers only
  // once committed, and never if aborted; offsets sent with send_offsets_to_transaction()
  // become the group's committed offsets with the commit. Each call blocks up to `timeout`.
  // Errors: client::Errc::kInvalidState for a call out of order; PRODUCER_FENCED (or
  // INVALID_PRODUCER_EPOCH) when another producer with the same transactional_id started,
  // or the broker aborted a transaction past its timeout: the producer can then only be
  // closed. After a failed send inside a transaction, commit fails: abort instead.
  //
  // Gets the producer id (fencing earlier producers of the id, whose open transaction the
  // broker aborts). Once, before the first transaction.
  Status init_transactions(std::chrono::milliseconds timeout = std::chrono::seconds(60));
  Status begin_transaction();
  // Commits `offsets` (the next offset to read, per partition) for the consumer's group with
  // the transaction: the consume-transform-produce loop. With the consumer's
  // group_metadata() (KIP-447) the coordinator refuses the offsets of a member the group no
  // longer has (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID): the transaction must then be aborted,
  // as its input partitions belong to another member now.
  Status send_offsets_to_transaction(const std::map<TopicPartition, int64_t>& offsets,
                                     const ConsumerGroupMetadata& group,
                                     std::chrono::milliseconds timeout = std::chrono::seconds(60));
  // The same for a group id alone: no member check.
  Status send_offsets_to_transaction(const std::map<TopicPartition, int64_t>& offsets,
                                     const std::string& group_id,
                                     std::chrono::milliseconds timeout = std::chrono::seconds(60));
  // Flushes the transaction's records, then commits (or aborts) it.
  Status commit_transaction(std::chrono::milliseconds timeout = std::chrono::seconds(60));
  Status abort_transaction(std::chrono::milliseconds timeout = std::chrono::seconds(60));

  struct Impl;

 private:
  explicit Producer(std::unique_ptr<Impl> impl);
  Status finish_transaction(bool commit, std::chrono::milliseconds timeout);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice
