#include "broker/broker.h"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <future>

#include "broker/kafka_errors.h"
#include "broker/topic_config.h"
#include "broker/version.h"
#include "log/logging.h"
#include "protocol/record_batch.h"

namespace sluice::broker {

namespace asio = boost::asio;

namespace {

constexpr auto kTickPeriod = std::chrono::milliseconds(100);
constexpr int kRetentionEveryTicks = 50;   // retention check every ~5 s
constexpr int kCompactionEveryTicks = 10;  // a compaction step every ~1 s (broker_groups.cc)
// Producer state is rebuilt from at most this many bytes at the end of each log.
constexpr uint64_t kProducerStateScanBytes = 64ull << 20;
constexpr int64_t kProducerIdBlock = 1000;

void route_log_line(log::LogLevel level, std::string_view message) {
  switch (level) {
    case log::LogLevel::kInfo:
      spdlog::info("{}", message);
      break;
    case log::LogLevel::kWarning:
      spdlog::warn("{}", message);
      break;
    case log::LogLevel::kError:
      spdlog::error("{}", message);
      break;
  }
}

uint64_t fnv1a(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (char c : s) {
    h ^= static_cast<uint8_t>(c);
    h *= 1099511628211ull;
  }
  return h;
}

std::string partition_dir(const std::string& data_dir, const TopicPartition& tp) {
  return data_dir + "/" + tp.topic + "-" + std::to_string(tp.partition);
}

}  // namespace

Result<std::unique_ptr<Broker>> Broker::create(const BrokerConfig& config) {
  log::set_log_sink(route_log_line);
  auto broker = std::unique_ptr<Broker>(new Broker(config));
  if (broker->config_.shards == 0) {
    broker->config_.shards = std::max(1u, std::thread::hardware_concurrency());
  }
  auto registry = TopicRegistry::open(config.data_dir, config.cluster_id);
  if (!registry) return unexpected(std::move(registry).error());
  broker->registry_ = std::move(*registry);
  for (uint32_t i = 0; i < broker->config_.shards; ++i) {
    broker->shards_.push_back(std::make_unique<ShardState>(i));
  }
  return broker;
}

Broker::~Broker() { stop(); }

ShardState& Broker::shard_of(const TopicPartition& tp) {
  const uint64_t h = fnv1a(tp.topic) + static_cast<uint64_t>(tp.partition);
  return *shards_[h % shards_.size()];
}

void Broker::start_shard(ShardState& ss) {
  // The ring and its event descriptor are created on the shard's own thread.
  std::promise<void> ready;
  ss.shard.start();
  ss.shard.post([this, &ss, &ready] {
    ss.ring = std::make_unique<log::IoRing>();
    ss.fds = std::make_unique<log::FdCache>(1024);
    ss.ring_events = std::make_unique<asio::posix::stream_descriptor>(ss.shard.context(),
                                                                      ::dup(ss.ring->event_fd()));
    ss.ticker = std::make_unique<asio::steady_timer>(ss.shard.context());
    watch_ring(ss);
    tick_shard(ss);
    ready.set_value();
  });
  ready.get_future().wait();
}

void Broker::watch_ring(ShardState& ss) {
  ss.ring_events->async_wait(asio::posix::stream_descriptor::wait_read,
                             [this, &ss](boost::system::error_code ec) {
                               if (ec) return;
                               ss.ring->poll_completions();
                               ss.ring->submit();
                               watch_ring(ss);
                             });
}

void Broker::tick_shard(ShardState& ss) {
  static thread_local int ticks = 0;
  ss.ticker->expires_after(kTickPeriod);
  ss.ticker->async_wait([this, &ss](boost::system::error_code ec) {
    if (ec) return;
    const bool retention = ++ticks % kRetentionEveryTicks == 0;
    for (auto& [tp, p] : ss.partitions) {
      if (p->deleting || p->log->failed()) continue;
      p->log->tick();
      if (retention) {
        auto r = p->log->apply_retention();
        if (r && r->segments_deleted > 0) {
          spdlog::info("{}-{}: retention deleted {} segment(s), {} bytes", tp.topic, tp.partition,
                       r->segments_deleted, r->bytes_deleted);
        }
      }
    }
    if (groups_ready_.load(std::memory_order_acquire)) groups_->tick(ss.shard.id());
    if (ticks % kCompactionEveryTicks == 0) compact_partitions(ss);
    ss.ring->submit();
    tick_shard(ss);
  });
}

log::LogConfig Broker::log_config_for(const TopicInfo& topic) const {
  log::LogConfig c;
  c.segment_bytes = static_cast<uint64_t>(topic_setting_int(topic, config_, "segment.bytes"));
  c.segment_ms = topic_setting_int(topic, config_, "segment.ms");
  c.retention_bytes = topic_setting_int(topic, config_, "retention.bytes");
  c.retention_ms = topic_setting_int(topic, config_, "retention.ms");
  c.flush.interval_ms = config_.flush_interval_ms;
  c.flush.mode = config_.flush_policy == FlushPolicy::kEveryBatch ? log::FlushMode::kEveryBatch
                 : config_.flush_policy == FlushPolicy::kInterval ? log::FlushMode::kInterval
                                                                  : log::FlushMode::kNever;
  // Small segments (tests, compaction) are not worth preallocating in full.
  c.preallocate = c.segment_bytes <= (256ull << 20);
  return c;
}

void Broker::open_partitions(const TopicInfo& topic, int32_t first, int32_t last,
                             std::function<void(Status)> done) {
  if (first >= last) {
    done({});
    return;
  }
  struct Gather {
    std::atomic<int32_t> left;
    std::mutex mutex;  // guards first_error (written by several shards)
    Status first_error;
    std::function<void(Status)> done;
  };
  auto g = std::make_shared<Gather>();
  g->left = last - first;
  g->done = std::move(done);
  const log::LogConfig lc = log_config_for(topic);
  const bool append_time =
      topic_setting_value(topic, config_, "message.timestamp.type") == "LogAppendTime";
  for (int32_t i = first; i < last; ++i) {
    TopicPartition tp{topic.name, i};
    ShardState& ss = shard_of(tp);
    ss.shard.post([this, &ss, tp, lc, g, append_time] {
      Status status;
      if (!ss.partitions.count(tp)) {
        const std::string dir = partition_dir(config_.data_dir, tp);
        auto opened = log::PartitionLog::open(dir, lc, *ss.ring, *ss.fds);
        if (!opened) {
          status = error(2, "cannot open " + dir + ": " + opened.error().message);
          spdlog::error("{}", status.error().message);
        } else {
          auto p = std::make_unique<Partition>();
          p->tp = tp;
          p->log = std::move(*opened);
          p->log_append_time = append_time;
          p->flush_every_batch = lc.flush.mode == log::FlushMode::kEveryBatch;
          for (const auto& issue : p->log->recovery_report().issues) {
            spdlog::warn("{}-{}: recovery: {} (segment {}, offset {}, byte {}, {} bytes removed)",
                         tp.topic, tp.partition, issue.detail, issue.segment_base_offset,
                         issue.offset, issue.position, issue.bytes_removed);
          }
          rebuild_producer_state(*p);
          ss.partitions[tp] = std::move(p);
        }
      }
      ss.ring->submit();
      if (!status) {
        std::lock_guard lock(g->mutex);
        if (g->first_error) g->first_error = status;
      }
      if (g->left.fetch_sub(1) == 1) g->done(g->first_error);
    });
  }
}

void Broker::rebuild_producer_state(Partition& p) {
  const int64_t end = *p.log->log_end_offset();
  int64_t from = *p.log->log_start_offset();
  // Only the tail matters (five batches per producer); skip ahead for big logs.
  if (p.log->size_bytes() > kProducerStateScanBytes) {
    auto bases = p.log->segment_base_offsets();
    uint64_t seen = 0;
    for (auto it = bases.rbegin(); it != bases.rend(); ++it) {
      from = *it;
      seen += p.log->size_bytes() / std::max<size_t>(1, bases.size());
      if (seen >= kProducerStateScanBytes) break;
    }
  }
  while (from < end) {
    auto bytes = p.log->read_copy(Offset(from), 1 << 20);
    if (!bytes || bytes->empty()) break;
    kafka::BatchIterator it(*bytes);
    int64_t next = from;
    while (true) {
      auto v = it.next();
      if (!v || !*v) break;
      const auto& b = **v;
      if (b.producer_id() >= 0 && b.base_sequence() >= 0) {
        p.producers.record(b.producer_id(), b.producer_epoch(), b.base_sequence(),
                           b.last_offset_delta() + 1, b.base_offset());
      }
      next = b.last_offset() + 1;
    }
    if (next <= from) break;
    from = next;
  }
}

void Broker::notify_waiters(Partition& p) {
  if (p.waiters.empty()) return;
  const int64_t hwm = p.high_watermark();
  std::vector<FetchWaiter> keep;
  std::vector<std::function<void()>> fire;
  for (auto& w : p.waiters) {
    if (w.token.expired()) continue;
    if (hwm > w.wake_above) {
      fire.push_back(std::move(w.wake));
    } else {
      keep.push_back(std::move(w));
    }
  }
  p.waiters = std::move(keep);
  for (auto& f : fire) f();
}

void Broker::delete_partitions(const TopicInfo& topic) {
  for (int32_t i = 0; i < topic.partitions; ++i) {
    TopicPartition tp{topic.name, i};
    ShardState& ss = shard_of(tp);
    ss.shard.post([this, &ss, tp] {
      auto it = ss.partitions.find(tp);
      if (it == ss.partitions.end()) return;
      it->second->deleting = true;
      for (auto& w : it->second->waiters) {
        if (!w.token.expired()) w.wake();
      }
      it->second->waiters.clear();
      // Closing needs the log idle: poll until its writes have completed.
      auto try_close = std::make_shared<std::function<void()>>();
      auto timer = std::make_shared<asio::steady_timer>(ss.shard.context());
      *try_close = [this, &ss, tp, try_close, timer] {
        auto it = ss.partitions.find(tp);
        if (it == ss.partitions.end()) return;
        if (!it->second->log->idle()) {
          timer->expires_after(std::chrono::milliseconds(5));
          timer->async_wait([try_close](boost::system::error_code) { (*try_close)(); });
          return;
        }
        (void)it->second->log->close();
        ss.partitions.erase(it);
        std::error_code ec;
        std::filesystem::remove_all(partition_dir(config_.data_dir, tp), ec);
        if (ec)
          spdlog::warn("{}-{}: could not remove its directory: {}", tp.topic, tp.partition,
                       ec.message());
        *try_close = nullptr;  // break the self-reference
      };
      (*try_close)();
    });
  }
}

void Broker::apply_topic_settings(const TopicInfo& topic) {
  const bool append_time =
      topic_setting_value(topic, config_, "message.timestamp.type") == "LogAppendTime";
  for (int32_t i = 0; i < topic.partitions; ++i) {
    TopicPartition tp{topic.name, i};
    ShardState& ss = shard_of(tp);
    ss.shard.post([&ss, tp, append_time] {
      if (Partition* p = ss.find(tp)) p->log_append_time = append_time;
    });
  }
}

void Broker::create_topic(const std::string& name, int32_t partitions, int16_t replication_factor,
                          const std::map<std::string, std::string>& configs,
                          std::function<void(Result<TopicInfo, TopicError>)> done) {
  Result<TopicInfo, TopicError> created = [&]() -> Result<TopicInfo, TopicError> {
    if (auto v = validate_topic_configs(configs); !v) return unexpected(v.error());
    std::lock_guard lock(topic_changes_mutex_);
    return registry_->create(name, partitions, replication_factor, configs,
                             name.rfind("__", 0) == 0);
  }();
  if (!created) {
    done(std::move(created));
    return;
  }
  spdlog::info("created topic '{}' with {} partition(s)", name, partitions);
  TopicInfo info = *created;
  open_partitions(info, 0, info.partitions, [info, done](Status s) {
    if (!s) {
      done(unexpected(TopicError{kafka::ErrorCode::kKafkaStorageError, s.error().message}));
    } else {
      done(info);
    }
  });
}

Status Broker::start() {
  for (auto& ss : shards_) start_shard(*ss);
  // Open (and recover) every partition before serving anything.
  auto snap = registry_->snapshot();
  size_t partitions = 0;
  std::vector<std::future<Status>> opened;
  for (const auto& [name, topic] : snap->topics) {
    auto promise = std::make_shared<std::promise<Status>>();
    opened.push_back(promise->get_future());
    open_partitions(topic, 0, topic.partitions, [promise](Status s) { promise->set_value(s); });
    partitions += static_cast<size_t>(topic.partitions);
  }
  for (auto& f : opened) {
    Status s = f.get();
    if (!s) return s;
  }
  if (auto s = start_groups(); !s) return s;
  std::vector<Shard*> shard_ptrs;
  for (auto& ss : shards_) shard_ptrs.push_back(&ss->shard);
  server_ = std::make_unique<Server>(
      config_, shard_ptrs,
      [this](const ConnectionInfo& conn, RequestFrame frame, std::function<void(Reply)> done) {
        handle(conn, std::move(frame), std::move(done));
      });
  if (auto s = server_->listen(); !s) return s;
  if (config_.advertised.host.empty() && config_.listen.port == 0) {
    config_.listen.port = server_->port();  // port 0: advertise the port we got
  }
  if (config_.listen.host == "0.0.0.0" && config_.advertised.host.empty()) {
    spdlog::warn(
        "listening on 0.0.0.0 without --advertised: clients will be told to connect to "
        "0.0.0.0, which only works on this host; set --advertised host:port");
  }
  server_->start();
  const bool uring = shards_.front()->ring->uses_io_uring();
  spdlog::info(
      "sluiced {} node {} cluster {}: data in {}, {} topic(s) and {} partition(s) "
      "recovered, {} shard(s), disk I/O through {}",
      kVersion, config_.node_id, registry_->cluster_id(),
      std::filesystem::absolute(config_.data_dir).lexically_normal().string(), snap->topics.size(),
      partitions, shards_.size(), uring ? "io_uring" : "pwrite/fdatasync (io_uring unavailable)");
  spdlog::info("serving Kafka clients on {}:{} (advertised as {})", config_.listen.host,
               server_->port(), config_.advertised_address().to_string());
  return {};
}

void Broker::stop() {
  if (stopped_) return;
  stopped_ = true;
  // In-flight long polls are answered now with what they have (Server::stop drains each
  // connection only once its pending responses are written, so a parked fetch would hold
  // shutdown up to its max_wait). A fetch parking after this sees stopping_ and answers too.
  stopping_ = true;
  for (auto& ss : shards_) {
    if (!ss->ring) continue;
    ss->shard.post([&ss] {
      for (auto& [tp, p] : ss->partitions) {
        auto waiters = std::move(p->waiters);
        p->waiters.clear();
        for (auto& w : waiters) {
          if (!w.token.expired()) w.wake();
        }
      }
    });
  }
  if (groups_) groups_->stop();
  if (server_) server_->stop();
  // Close every log on its own shard once its writes are done.
  for (auto& ss : shards_) {
    if (!ss->ring) continue;
    std::promise<void> closed;
    ss->shard.post([&ss, &closed] {
      ss->ticker->cancel();
      if (ss->group_timer) ss->group_timer->cancel();
      for (auto& [tp, p] : ss->partitions) {
        while (!p->log->idle()) {
          ss->ring->submit();
          ss->ring->wait();
        }
        if (auto r = p->log->close(); !r) {
          spdlog::error("{}-{}: close failed: {}", tp.topic, tp.partition, r.error().message);
        }
      }
      ss->partitions.clear();
      ss->ring->drain();
      boost::system::error_code ec;
      ss->ring_events->close(ec);
      closed.set_value();
    });
    closed.get_future().wait();
  }
  server_.reset();
  for (auto& ss : shards_) ss->shard.stop_now();
  spdlog::info("sluiced stopped cleanly");
  spdlog::default_logger()->flush();
}

Result<int64_t, TopicError> Broker::next_producer_id() {
  std::lock_guard lock(producer_ids_mutex_);
  if (producer_id_next_ >= producer_id_end_) {
    auto first = registry_->allocate_producer_ids(kProducerIdBlock);
    if (!first) return unexpected(first.error());
    producer_id_next_ = *first;
    producer_id_end_ = *first + kProducerIdBlock;
  }
  return producer_id_next_++;
}

}  // namespace sluice::broker
