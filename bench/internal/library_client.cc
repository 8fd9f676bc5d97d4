// The client behind internal/client.h built on the Sluice libraries: sluice::Producer for
// sinks, sluice::Consumer (hand-assigned, no group) for sources. Topic creation and offsets
// go through the raw client's admin requests, which the libraries do not offer.
#include <chrono>
#include <string>
#include <thread>

#include "bench/internal/client.h"
#include "common/assert.h"
#include "consumer/consumer.h"
#include "producer/producer.h"

namespace sluice::bench::detail {
namespace {

class LibrarySink final : public Sink {
 public:
  LibrarySink(std::unique_ptr<Producer> producer, const SinkOptions& options, AckFn on_ack)
      : producer_(std::move(producer)), topic_(options.topic), on_ack_(std::move(on_ack)) {}
  ~LibrarySink() override { producer_->close(); }

  Result<void> send(int32_t partition, std::optional<Bytes> key, Bytes value,
                    int64_t intended_ns) override {
    ProducerRecord record{.topic = topic_, .partition = partition};
    if (key) record.key = std::string(reinterpret_cast<const char*>(key->data()), key->size());
    record.value = std::string(reinterpret_cast<const char*>(value.data()), value.size());
    const auto value_bytes = static_cast<int64_t>(value.size());
    // Callbacks run on the producer's I/O thread, one per record.
    return producer_->send(
        std::move(record), [this, intended_ns, value_bytes](const RecordMetadata& md) {
          on_ack_(std::span<const int64_t>(&intended_ns, 1), value_bytes, md.ok());
        });
  }

  Result<void> wait_until(int64_t until_ns) override {
    // The producer lingers and sends on its own thread.
    std::this_thread::sleep_until(
        std::chrono::steady_clock::time_point(std::chrono::nanoseconds(until_ns)));
    return {};
  }

  Result<void> flush() override { return producer_->flush(); }

 private:
  std::unique_ptr<Producer> producer_;
  const std::string topic_;
  const AckFn on_ack_;
};

class LibrarySource final : public Source {
 public:
  LibrarySource(std::unique_ptr<Consumer> consumer, const SourceOptions& options)
      : consumer_(std::move(consumer)), options_(options), positions_(options.start_offsets) {}

  Result<void> start() {
    std::vector<TopicPartition> tps;
    for (int32_t p : options_.partitions) tps.push_back({options_.topic, p});
    if (auto r = consumer_->assign(tps); !r) return r;
    for (size_t i = 0; i < tps.size(); ++i) {
      if (auto r = consumer_->seek(tps[i], options_.start_offsets[i]); !r) return r;
    }
    return {};
  }

  Result<void> poll(const RecordFn& fn) override {
    auto records = consumer_->poll(std::chrono::milliseconds(options_.max_wait_ms));
    if (!records) return unexpected(records.error());
    for (const ConsumerRecord& r : *records) {
      const std::string& v = r.value ? *r.value : empty_;
      fn(FetchedRecord{r.partition, r.offset,
                       Bytes(reinterpret_cast<const std::byte*>(v.data()), v.size())});
      for (size_t i = 0; i < options_.partitions.size(); ++i) {
        if (options_.partitions[i] == r.partition) positions_[i] = r.offset + 1;
      }
    }
    return {};
  }

  // Positions after the records returned so far (a position the consumer skipped past
  // without records, such as control batches, shows up once a record follows).
  std::vector<int64_t> positions() const override { return positions_; }

 private:
  std::unique_ptr<Consumer> consumer_;
  const SourceOptions options_;
  std::vector<int64_t> positions_;
  const std::string empty_;
};

class LibraryClient final : public Client {
 public:
  explicit LibraryClient(const std::string& bootstrap)
      : bootstrap_(bootstrap), admin_(make_raw_client(bootstrap)) {}

  Result<int32_t> ensure_topic(const std::string& topic, int32_t partitions) override {
    return admin_->ensure_topic(topic, partitions);
  }
  Result<std::vector<int64_t>> offsets(const std::string& topic, int32_t partitions,
                                       bool latest) override {
    return admin_->offsets(topic, partitions, latest);
  }

  Result<std::unique_ptr<Sink>> make_sink(const SinkOptions& options, AckFn on_ack) override {
    ProducerConfig config;
    config.bootstrap_servers = bootstrap_;
    config.client_id = "sluice-bench";
    config.acks = options.acks;
    config.compression = std::string(kafka::compression_name(options.compression));
    config.linger_ms = options.linger_ms;
    config.batch_size = options.batch_bytes;
    config.max_in_flight = options.inflight_max;
    config.enable_idempotence = options.acks == -1;
    auto producer = Producer::create(config);
    if (!producer) return unexpected(producer.error());
    return std::unique_ptr<Sink>(new LibrarySink(std::move(*producer), options, std::move(on_ack)));
  }

  Result<std::unique_ptr<Source>> make_source(const SourceOptions& options) override {
    ConsumerConfig config;
    config.bootstrap_servers = bootstrap_;
    config.client_id = "sluice-bench";
    config.auto_offset_reset = "earliest";
    config.enable_auto_commit = false;
    config.fetch_max_wait_ms = options.max_wait_ms;
    config.max_partition_fetch_bytes = 4 << 20;
    auto consumer = Consumer::create(config);
    if (!consumer) return unexpected(consumer.error());
    auto source = std::make_unique<LibrarySource>(std::move(*consumer), options);
    if (auto r = source->start(); !r) return unexpected(r.error());
    return std::unique_ptr<Source>(std::move(source));
  }

 private:
  const std::string bootstrap_;
  std::unique_ptr<Client> admin_;
};

}  // namespace

std::unique_ptr<Client> make_library_client(const std::string& bootstrap) {
  return std::make_unique<LibraryClient>(bootstrap);
}

}  // namespace sluice::bench::detail
