// The client behind internal/client.h built on the Sluice libraries: sluice::Producer for
// sinks, sluice::Consumer (hand-assigned, no group) for sources and offsets, client::Client
// for topic creation. Every connection takes the client settings given by Kafka name
// (-X security.protocol=SSL, ...), so the benchmark runs over TLS and SASL too.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <thread>

#include "bench/internal/client.h"
#include "client/client.h"
#include "common/assert.h"
#include "consumer/consumer.h"
#include "producer/producer.h"
#include "protocol/error_codes.h"

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
          // The first failure says why (the summary only counts them).
          if (!md.ok() && !told_.exchange(true)) {
            std::fprintf(stderr, "sluice bench: a record to %s[%d] failed: %s\n", md.topic.c_str(),
                         md.partition, md.error.message.c_str());
          }
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
  std::atomic<bool> told_{false};
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
      const std::string_view v = r.value.value_or(std::string_view());
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
};

// Applies the -X settings after the bench's own defaults, leaving out those this kind of
// config does not know (linger.ms for a consumer; bench/cli.cc checked each is known to one).
template <class Config>
Result<void> apply(Config& config, const std::map<std::string, std::string>& properties) {
  for (const auto& [k, v] : properties) {
    auto s = set_config(config, k, v);
    if (!s && s.error().message.rfind("unknown config", 0) != 0) return unexpected(s.error());
  }
  return {};
}

class LibraryClient final : public Client {
 public:
  LibraryClient(const std::string& bootstrap, std::map<std::string, std::string> properties)
      : bootstrap_(bootstrap), properties_(std::move(properties)) {}

  Result<int32_t> ensure_topic(const std::string& topic, int32_t partitions) override {
    if (!admin_) {
      client::ClientConfig cc;
      cc.bootstrap_servers = client::parse_broker_list(bootstrap_);
      cc.client_id = "sluice-bench";
      for (const auto& [k, v] : properties_) client::set_security_config(cc.security, k, v);
      admin_ = std::make_unique<client::Client>(cc);
    }
    bool created = false;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (;;) {
      auto md = admin_->metadata({topic}, true);
      if (!md) return unexpected(md.error());
      const client::TopicInfo* t = (*md)->topic(topic);
      const int16_t code = t ? t->error_code : int16_t{3};  // UNKNOWN_TOPIC_OR_PARTITION
      if (t && code == 0 && !t->partitions.empty() &&
          std::all_of(t->partitions.begin(), t->partitions.end(),
                      [](const auto& p) { return p.error_code == 0 && p.leader >= 0; })) {
        return static_cast<int32_t>(t->partitions.size());
      }
      if (code == static_cast<int16_t>(kafka::ErrorCode::kUnknownTopicOrPartition) && !created) {
        kafka::CreateTopicsRequest req;
        req.topics.push_back({.name = topic, .num_partitions = partitions, .replication_factor = -1});
        req.timeout_ms = 10'000;
        auto r = admin_->call_as<kafka::CreateTopicsResponse>(client::kAnyBroker, req);
        if (!r) return unexpected(r.error());
        for (const auto& ct : r->topics) {
          if (ct.error_code != 0 &&
              ct.error_code != static_cast<int16_t>(kafka::ErrorCode::kTopicAlreadyExists)) {
            return unexpected(client::kafka_error(ct.error_code, "create topic " + topic));
          }
        }
        created = true;
        continue;
      }
      if (std::chrono::steady_clock::now() > deadline) {
        return unexpected(client::kafka_error(code, "topic " + topic + " not ready"));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }

  Result<std::vector<int64_t>> offsets(const std::string& topic, int32_t partitions,
                                       bool latest) override {
    if (!offsets_) {
      auto consumer = make_consumer(100);
      if (!consumer) return unexpected(consumer.error());
      offsets_ = std::move(*consumer);
    }
    std::vector<int64_t> out;
    for (int32_t p = 0; p < partitions; ++p) {
      auto w = offsets_->watermark_offsets({topic, p});
      if (!w) return unexpected(w.error());
      out.push_back(latest ? w->second : w->first);
    }
    return out;
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
    if (auto a = apply(config, properties_); !a) return unexpected(a.error());
    auto producer = Producer::create(config);
    if (!producer) return unexpected(producer.error());
    return std::unique_ptr<Sink>(new LibrarySink(std::move(*producer), options, std::move(on_ack)));
  }

  Result<std::unique_ptr<Source>> make_source(const SourceOptions& options) override {
    auto consumer = make_consumer(options.max_wait_ms);
    if (!consumer) return unexpected(consumer.error());
    auto source = std::make_unique<LibrarySource>(std::move(*consumer), options);
    if (auto r = source->start(); !r) return unexpected(r.error());
    return std::unique_ptr<Source>(std::move(source));
  }

 private:
  Result<std::unique_ptr<Consumer>> make_consumer(int32_t max_wait_ms) {
    ConsumerConfig config;
    config.bootstrap_servers = bootstrap_;
    config.client_id = "sluice-bench";
    config.auto_offset_reset = "earliest";
    config.enable_auto_commit = false;
    config.fetch_max_wait_ms = max_wait_ms;
    config.max_partition_fetch_bytes = 4 << 20;
    if (auto a = apply(config, properties_); !a) return unexpected(a.error());
    return Consumer::create(config);
  }

  const std::string bootstrap_;
  const std::map<std::string, std::string> properties_;
  std::unique_ptr<client::Client> admin_;     // topic creation
  std::unique_ptr<Consumer> offsets_;         // watermarks
};

}  // namespace

std::unique_ptr<Client> make_library_client(const std::string& bootstrap,
                                            const std::map<std::string, std::string>& properties) {
  return std::make_unique<LibraryClient>(bootstrap, properties);
}

}  // namespace sluice::bench::detail
