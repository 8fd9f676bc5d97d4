// sluice::Producer: an embeddable, asynchronous Kafka producer.
//
//   sluice::ProducerConfig config;
//   config.bootstrap_servers = "127.0.0.1:9092";
//   auto producer = sluice::Producer::create(config);      // Result<std::unique_ptr<Producer>>
//   if (!producer) { std::cerr << producer.error().message; return 1; }
//   auto done = (*producer)->send({.topic = "events", .key = "k", .value = "hello"});
//   sluice::RecordMetadata md = done.get();                // md.ok(), md.partition, md.offset
//   (*producer)->flush();
//
// Records are batched per partition (linger_ms, batch_size) and sent by the producer's I/O
// thread, at most max_in_flight requests per partition. Idempotence is on by default: the
// producer gets a producer id (InitProducerId) and numbers its batches, so a batch retried
// after a lost answer or a broker restart is written once. Keyed records go to
// murmur2(key) % partitions, as the Java client and librdkafka's murmur2_random put them;
// keyless records stick to one partition per batch.
//
// Thread safety: every method may be called from any thread. Callbacks run on the producer's
// I/O thread; keep them short and do not call flush() or close() from them.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

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

class Producer {
 public:
  // Connects, checks the cluster is reachable and, with idempotence, obtains a producer id.
  static Result<std::unique_ptr<Producer>> create(const ProducerConfig& config);
  ~Producer();  // close() with the delivery timeout
  Producer(const Producer&) = delete;
  Producer& operator=(const Producer&) = delete;

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

  struct Impl;

 private:
  explicit Producer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice
