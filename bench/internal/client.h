// What the load generator needs from a Kafka client, kept small so the workload code does not
// care whether the records go through sluice::Producer / sluice::Consumer or through the raw
// codec client (internal/raw_client.h). One Sink per producer thread, one Source per consumer
// thread; each is used by its own thread only (a Sink may call its AckFn on another thread).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/bytes.h"
#include "common/result.h"
#include "protocol/compression.h"

namespace sluice::bench::detail {

struct SinkOptions {
  std::string topic;
  int16_t acks = 1;  // 0, 1 or -1 (all)
  kafka::Compression compression = kafka::Compression::kNone;
  int32_t batch_bytes = 16384;
  int32_t linger_ms = 5;
  int32_t inflight_max = 5;  // produce requests in flight per connection
  int32_t partitions = 1;
};

// Called once per acknowledged (or failed) batch with the intended send times of its records
// and the bytes of their values.
using AckFn =
    std::function<void(std::span<const int64_t> intended_ns, int64_t value_bytes, bool ok)>;

class Sink {
 public:
  virtual ~Sink() = default;
  // Queues one record; may block while the in-flight window is full (backpressure).
  virtual Result<void> send(int32_t partition, std::optional<Bytes> key, Bytes value,
                            int64_t intended_ns) = 0;
  // Sends batches that are full or whose linger expired, then waits until `until_ns`
  // (steady clock), sending lingering batches as they fall due.
  virtual Result<void> wait_until(int64_t until_ns) = 0;
  // Sends everything queued and waits for every acknowledgement.
  virtual Result<void> flush() = 0;
};

struct FetchedRecord {
  int32_t partition;
  int64_t offset;
  Bytes value;  // valid during the callback only
};
using RecordFn = std::function<void(const FetchedRecord&)>;

struct SourceOptions {
  std::string topic;
  std::vector<int32_t> partitions;     // manual assignment
  std::vector<int64_t> start_offsets;  // one per partition
  int32_t max_wait_ms = 100;
};

class Source {
 public:
  virtual ~Source() = default;
  // One fetch round: calls `fn` for each new record; returns after at most max_wait_ms.
  virtual Result<void> poll(const RecordFn& fn) = 0;
  // Next offset to read per assigned partition (in SourceOptions order).
  virtual std::vector<int64_t> positions() const = 0;
};

class Client {
 public:
  virtual ~Client() = default;
  // Creates the topic when missing; returns its partition count.
  virtual Result<int32_t> ensure_topic(const std::string& topic, int32_t partitions) = 0;
  // Earliest (`latest` false) or latest offsets of partitions 0..n-1.
  virtual Result<std::vector<int64_t>> offsets(const std::string& topic, int32_t partitions,
                                               bool latest) = 0;
  virtual Result<std::unique_ptr<Sink>> make_sink(const SinkOptions& options, AckFn on_ack) = 0;
  virtual Result<std::unique_ptr<Source>> make_source(const SourceOptions& options) = 0;
};

// The codec-based client (internal/raw_client.cc), talking to one broker at `bootstrap`.
std::unique_ptr<Client> make_raw_client(const std::string& bootstrap);
// sluice::Producer and sluice::Consumer (internal/library_client.cc), with `properties`
// (client settings by Kafka name: security.protocol, ...) on every connection. `bootstrap`
// may list several brokers, comma-separated.
std::unique_ptr<Client> make_library_client(
    const std::string& bootstrap, const std::map<std::string, std::string>& properties = {});

}  // namespace sluice::bench::detail
