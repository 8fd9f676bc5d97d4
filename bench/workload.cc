// The run: threads, phases, meters and the per-second reporter (see bench.h).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <random>
#include <thread>

#include "bench/bench.h"
#include "bench/internal/client.h"
#include "bench/rate_limiter.h"
#include "common/assert.h"
#include "common/bytes.h"
#include "common/clock.h"
#include "partitioner/key_partitioner.h"
#include "protocol/compression.h"

namespace sluice::bench {
namespace {

using detail::Client;

constexpr int64_t kNsPerS = 1'000'000'000;
constexpr int kTickMs = 50;
constexpr size_t kFillerBytes = 1 << 20;  // random filler the record values are cut from


// What one side (produce or consume) measured; written by its worker threads, read by the
// reporter each second. A mutex, not atomics: it is taken once per batch or fetch, and the
// histograms must move together with the counts.
struct Meter {
  std::mutex mu;
  Histogram interval_latency;  // every record of the current second, warm-up included
  int64_t interval_records = 0;
  int64_t interval_bytes = 0;
  Histogram latency;  // measured records only
  int64_t records = 0;
  int64_t bytes = 0;
  int64_t errors = 0;
  int64_t total = 0;         // every record, warm-up included
  int64_t last_ns = 0;       // when the last measured record was counted
  int64_t out_of_order = 0;  // consumers, e2e only

  // Adds one measured or warm-up record.
  void add_locked(int64_t latency_us, int64_t value_bytes, bool measured, int64_t now) {
    if (latency_us >= 0) interval_latency.record(latency_us);
    ++interval_records;
    interval_bytes += value_bytes;
    ++total;
    if (!measured) return;
    if (latency_us >= 0) latency.record(latency_us);
    ++records;
    bytes += value_bytes;
    last_ns = now;
  }
};

struct Shared {
  const Options& options;
  Client& client;
  int32_t partitions = 0;
  int64_t start_ns = 0;
  int64_t measure_ns = 0;  // end of the warm-up
  int64_t end_ns = 0;      // end of the measured phase in duration mode; INT64_MAX otherwise
  kafka::Compression compression = kafka::Compression::kNone;
  std::vector<std::byte> filler;
  Meter produced;
  Meter consumed;
  std::atomic<bool> stop_producers{false};
  std::atomic<bool> stop_consumers{false};
  std::atomic<int64_t> producers_done_ns{0};
  std::mutex error_mu;
  std::string first_error;

  void fail(const std::string& why) {
    std::lock_guard lock(error_mu);
    if (first_error.empty()) first_error = why;
    stop_producers = true;
    stop_consumers = true;
  }
};

// ---- producers ----------------------------------------------------------------------------

class ProducerWorker {
 public:
  ProducerWorker(Shared& shared, int32_t index)
      : s_(shared),
        o_(shared.options),
        index_(index),
        rng_(o_.seed * 7919 + static_cast<uint64_t>(index)) {}

  void run() {
    auto sink = s_.client.make_sink({.topic = o_.topic,
                                     .acks = o_.acks,
                                     .compression = s_.compression,
                                     .batch_bytes = o_.batch_bytes,
                                     .linger_ms = o_.linger_ms,
                                     .partitions = s_.partitions},
                                    [this](std::span<const int64_t> intended, int64_t value_bytes,
                                           bool ok) { on_ack(intended, value_bytes, ok); });
    if (!sink) return s_.fail("producer: " + sink.error().message);
    if (auto r = loop(**sink); !r) return s_.fail("producer: " + r.error().message);
    if (auto r = (*sink)->flush(); !r) return s_.fail("producer: " + r.error().message);
  }

 private:
  Result<void> loop(detail::Sink& sink) {
    const double rate = o_.rate_per_s / o_.producers;
    // Producers are phased so that together they send evenly.
    const int64_t phase = rate > 0 ? static_cast<int64_t>(1e9 / o_.rate_per_s * index_) : 0;
    RateLimiter limiter(rate, s_.start_ns + phase);
    const int64_t quota = o_.records / o_.producers + (index_ < o_.records % o_.producers ? 1 : 0);
    int64_t measured = 0;
    partition_ = index_ % s_.partitions;
    std::vector<std::byte> value(static_cast<size_t>(o_.record_bytes_max));
    for (;;) {
      if (s_.stop_producers.load(std::memory_order_relaxed)) return {};
      if (o_.records > 0 && measured >= quota) return {};
      const int64_t intended = limiter.next(steady_ns());
      if (intended >= s_.end_ns) return {};
      if (!limiter.unlimited() && intended > steady_ns()) {
        if (auto r = sink.wait_until(intended); !r) return r;
      }
      const size_t size = record_size();
      fill(value, size, intended);
      std::optional<Bytes> key = next_key();
      const int32_t partition = pick_partition(key, size);
      if (auto r = sink.send(partition, key, Bytes(value.data(), size), intended); !r) return r;
      if (intended >= s_.measure_ns) ++measured;
    }
  }

  size_t record_size() {
    if (o_.record_bytes_min == o_.record_bytes_max) return static_cast<size_t>(o_.record_bytes_min);
    std::uniform_int_distribution<int32_t> d(o_.record_bytes_min, o_.record_bytes_max);
    return static_cast<size_t>(d(rng_));
  }

  void fill(std::vector<std::byte>& value, size_t size, int64_t intended) {
    store_be<int64_t>(value.data(), intended);
    store_be<uint64_t>(value.data() + 8, (static_cast<uint64_t>(index_) << 48) | sequence_++);
    // Filler from a random position of a shared random buffer: varied, and incompressible
    // unless the run asks for compression of repeated bytes (it cannot: see README).
    const size_t rest = size - kRecordBytesMin;
    if (rest == 0) return;
    const size_t from = std::uniform_int_distribution<size_t>(0, kFillerBytes - rest)(rng_);
    std::copy_n(s_.filler.begin() + static_cast<ptrdiff_t>(from), rest,
                value.begin() + kRecordBytesMin);
  }

  std::optional<Bytes> next_key() {
    if (o_.key_distribution == KeyDistribution::kNone) return std::nullopt;
    const int64_t k = o_.key_distribution == KeyDistribution::kRandom
                          ? std::uniform_int_distribution<int64_t>(0, o_.keys - 1)(rng_)
                          : key_counter_++ % o_.keys;
    const int n = std::snprintf(key_, sizeof key_, "key-%lld", static_cast<long long>(k));
    return Bytes(reinterpret_cast<const std::byte*>(key_), static_cast<size_t>(n));
  }

  // Keyed records go where Kafka clients put them (murmur2); unkeyed ones stick to one
  // partition for a batch's worth of bytes, as Kafka's sticky partitioner does.
  int32_t pick_partition(const std::optional<Bytes>& key, size_t size) {
    if (key) return partitioner::partition_for_key(*key, s_.partitions);
    sticky_bytes_ += static_cast<int64_t>(size);
    if (sticky_bytes_ > o_.batch_bytes) {
      sticky_bytes_ = static_cast<int64_t>(size);
      partition_ = (partition_ + 1) % s_.partitions;
    }
    return partition_;
  }

  // On the sink's receiving thread.
  void on_ack(std::span<const int64_t> intended, int64_t value_bytes, bool ok) {
    const int64_t now = steady_ns();
    const auto count = static_cast<int64_t>(intended.size());
    std::lock_guard lock(s_.produced.mu);
    if (!ok) {
      s_.produced.errors += count;
      return;
    }
    // The sink reports bytes per batch: spread them evenly, the remainder on the last record.
    const int64_t each = count ? value_bytes / count : 0;
    for (int64_t i = 0; i < count; ++i) {
      const int64_t t = intended[static_cast<size_t>(i)];
      const int64_t bytes = each + (i == count - 1 ? value_bytes - each * count : 0);
      s_.produced.add_locked((now - t) / 1000, bytes, t >= s_.measure_ns, now);
    }
  }

  Shared& s_;
  const Options& o_;
  const int32_t index_;
  std::mt19937_64 rng_;
  uint64_t sequence_ = 0;
  int64_t key_counter_ = 0;
  int32_t partition_ = 0;
  int64_t sticky_bytes_ = 0;
  char key_[32] = {};
};

// ---- consumers ----------------------------------------------------------------------------

struct Received {
  int64_t latency_us;
  int64_t bytes;
  bool measured;
};

void consume(Shared& s, const std::vector<int32_t>& partitions, const std::vector<int64_t>& start,
             const std::vector<int64_t>& end) {
  const bool e2e = s.options.mode == Mode::kE2e;
  auto source = s.client.make_source(
      {.topic = s.options.topic, .partitions = partitions, .start_offsets = start});
  if (!source) return s.fail("consumer: " + source.error().message);
  // e2e: the last sequence seen per producer and partition, to catch duplicates and gaps in
  // order (each producer writes a partition over one connection, in order, without retries).
  std::vector<int64_t> last_seq(static_cast<size_t>(s.options.producers * s.partitions), -1);
  std::vector<Received> got;
  int64_t out_of_order = 0;
  while (!s.stop_consumers.load(std::memory_order_relaxed)) {
    got.clear();
    int64_t now = steady_ns();
    auto polled = (*source)->poll([&](const detail::FetchedRecord& r) {
      const auto size = static_cast<int64_t>(r.value.size());
      if (!e2e || r.value.size() < static_cast<size_t>(kRecordBytesMin)) {
        got.push_back({-1, size, now >= s.measure_ns});
        return;
      }
      const int64_t intended = load_be<int64_t>(r.value.data());
      const uint64_t id = load_be<uint64_t>(r.value.data() + 8);
      const auto producer = static_cast<int64_t>(id >> 48);
      const auto seq = static_cast<int64_t>(id & ((uint64_t{1} << 48) - 1));
      if (producer < s.options.producers) {
        int64_t& last = last_seq[static_cast<size_t>(producer * s.partitions + r.partition)];
        if (seq <= last) ++out_of_order;
        last = std::max(last, seq);
      }
      got.push_back(
          {std::max<int64_t>(0, (steady_ns() - intended) / 1000), size, intended >= s.measure_ns});
    });
    if (!polled) return s.fail("consumer: " + polled.error().message);
    now = steady_ns();
    {
      std::lock_guard lock(s.consumed.mu);
      for (const Received& r : got) s.consumed.add_locked(r.latency_us, r.bytes, r.measured, now);
      s.consumed.out_of_order = out_of_order;  // one consumer per partition: sums are per thread
    }
    if (!e2e) {
      const auto at = (*source)->positions();
      bool caught_up = true;
      for (size_t i = 0; i < at.size(); ++i) caught_up = caught_up && at[i] >= end[i];
      if (caught_up) return;
    }
  }
}

// ---- the run ------------------------------------------------------------------------------

// Per-second figures; resets the interval part of both meters.
Sample take_sample(Shared& s, int64_t now) {
  Sample sample;
  sample.t_s = static_cast<double>(now - s.start_ns) / 1e9;
  sample.warmup = now - kNsPerS / 2 < s.measure_ns;  // most of the second was warm-up
  auto take = [](Meter& m, double& rps, double& mbps, Histogram* latency) {
    std::lock_guard lock(m.mu);
    rps = static_cast<double>(m.interval_records);
    mbps = static_cast<double>(m.interval_bytes) / 1e6;
    if (latency) latency->add(m.interval_latency);
    m.interval_records = m.interval_bytes = 0;
    m.interval_latency.reset();
  };
  Histogram latency;
  const bool e2e = s.options.mode == Mode::kE2e;
  take(s.produced, sample.produce_records_per_s, sample.produce_mb_per_s, e2e ? nullptr : &latency);
  take(s.consumed, sample.consume_records_per_s, sample.consume_mb_per_s, e2e ? &latency : nullptr);
  sample.p50_us = latency.value_at_percentile(50);
  sample.p99_us = latency.value_at_percentile(99);
  sample.max_us = latency.max();
  return sample;
}

void print_progress(const Options& o, const Sample& x) {
  std::string line = std::to_string(static_cast<int>(x.t_s + 0.5)) + "s";
  char buf[200];
  if (o.mode != Mode::kConsume) {
    std::snprintf(buf, sizeof buf, "  produce %9.0f rec/s %8.2f MB/s", x.produce_records_per_s,
                  x.produce_mb_per_s);
    line += buf;
  }
  if (o.mode != Mode::kProduce) {
    std::snprintf(buf, sizeof buf, "  consume %9.0f rec/s %8.2f MB/s", x.consume_records_per_s,
                  x.consume_mb_per_s);
    line += buf;
  }
  if (o.mode != Mode::kConsume) {
    std::snprintf(buf, sizeof buf, "  %s p50 %.3f p99 %.3f max %.3f ms",
                  o.mode == Mode::kE2e ? "e2e" : "ack", x.p50_us / 1e3, x.p99_us / 1e3,
                  x.max_us / 1e3);
    line += buf;
  }
  if (x.warmup) line += "  (warm-up)";
  std::fprintf(stderr, "%s\n", line.c_str());
}

// Consumers in the e2e mode keep reading after the producers stop, until every acknowledged
// record has arrived or nothing has arrived for drain_timeout_s.
struct Drain {
  int64_t seen = -1;
  int64_t since_ns = 0;
};

// True when the run is over; may tell consumers to stop.
bool finished(Shared& s, int64_t now, bool producers_running, bool consumers_running,
              Drain& drain) {
  const Options& o = s.options;
  {
    std::lock_guard lock(s.error_mu);
    if (!s.first_error.empty()) return true;
  }
  if (o.mode == Mode::kProduce) return !producers_running;
  if (o.mode == Mode::kConsume) {
    std::lock_guard lock(s.consumed.mu);
    const bool enough = o.records > 0 ? s.consumed.records >= o.records : now >= s.end_ns;
    if (enough) s.stop_consumers = true;
    return !consumers_running;
  }
  if (producers_running) return false;
  int64_t consumed = 0;
  int64_t produced = 0;
  {
    std::lock_guard lock(s.consumed.mu);
    consumed = s.consumed.total;
  }
  {
    std::lock_guard lock(s.produced.mu);
    produced = s.produced.total;
  }
  if (consumed != drain.seen) drain = {consumed, now};
  if (consumed >= produced ||
      now - drain.since_ns > static_cast<int64_t>(o.drain_timeout_s * kNsPerS)) {
    s.stop_consumers = true;
  }
  return !consumers_running;
}

}  // namespace

namespace {

// Partitions of consumer `index` of `consumers`: round-robin.
std::vector<int32_t> assignment(int32_t partitions, int32_t consumers, int32_t index) {
  std::vector<int32_t> out;
  for (int32_t p = index; p < partitions; p += consumers) out.push_back(p);
  return out;
}

Result<void> start_consumers(Shared& s, std::vector<std::thread>& threads,
                             std::atomic<int32_t>& running) {
  const Options& o = s.options;
  auto earliest = s.client.offsets(o.topic, s.partitions, false);
  if (!earliest) return unexpected(earliest.error());
  auto latest = s.client.offsets(o.topic, s.partitions, true);
  if (!latest) return unexpected(latest.error());
  const std::vector<int64_t>& from = o.mode == Mode::kE2e ? *latest : *earliest;
  const int32_t consumers = std::min(o.consumers, s.partitions);
  for (int32_t c = 0; c < consumers; ++c) {
    std::vector<int32_t> mine = assignment(s.partitions, consumers, c);
    std::vector<int64_t> start, end;
    for (int32_t p : mine) {
      start.push_back(from[static_cast<size_t>(p)]);
      end.push_back((*latest)[static_cast<size_t>(p)]);
    }
    ++running;
    threads.emplace_back([&s, &running, mine, start, end] {
      consume(s, mine, start, end);
      --running;
    });
  }
  return {};
}

SideResult side_result(Meter& m, bool active, int64_t measure_ns, int64_t end_ns) {
  SideResult r;
  std::lock_guard lock(m.mu);
  r.active = active;
  r.records = m.records;
  r.bytes = m.bytes;
  r.errors = m.errors;
  r.seconds = std::max(0.0, static_cast<double>(end_ns - measure_ns) / 1e9);
  r.latency.add(m.latency);
  return r;
}

}  // namespace

Result<RunResult> run(const Options& o) {
  if (auto v = validate(o); !v) return unexpected(v.error());
  auto client = o.client == ClientKind::kRaw ? detail::make_raw_client(o.bootstrap)
                                             : detail::make_library_client(o.bootstrap, o.properties);
  auto partitions = client->ensure_topic(o.topic, o.partitions);
  if (!partitions) return unexpected(partitions.error());
  Shared s{.options = o, .client = *client, .partitions = *partitions};
  s.compression = *kafka::parse_compression(o.compression);
  s.filler.resize(kFillerBytes);
  std::mt19937_64 rng(o.seed);
  for (auto& b : s.filler) b = static_cast<std::byte>(rng());

  std::vector<std::thread> consumer_threads, producer_threads;
  std::atomic<int32_t> consumers_running{0}, producers_running{0};
  s.start_ns = steady_ns();
  s.measure_ns = s.start_ns + static_cast<int64_t>(o.warmup_s * kNsPerS);
  s.end_ns =
      o.records > 0 ? INT64_MAX : s.measure_ns + static_cast<int64_t>(o.duration_s * kNsPerS);
  if (o.mode != Mode::kProduce) {
    if (auto r = start_consumers(s, consumer_threads, consumers_running); !r) {
      s.stop_consumers = true;
      for (auto& t : consumer_threads) t.join();
      return unexpected(r.error());
    }
  }
  if (o.mode != Mode::kConsume) {
    for (int32_t i = 0; i < o.producers; ++i) {
      ++producers_running;
      producer_threads.emplace_back([&s, &producers_running, i] {
        ProducerWorker(s, i).run();
        if (--producers_running == 0) s.producers_done_ns = steady_ns();
      });
    }
  }

  RunResult result{.options = o, .partitions = s.partitions};
  Drain drain;
  int64_t next_sample = s.start_ns + kNsPerS;
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(kTickMs));
    const int64_t now = steady_ns();
    if (now >= next_sample) {
      result.samples.push_back(take_sample(s, now));
      if (o.progress) print_progress(o, result.samples.back());
      next_sample += kNsPerS;
    }
    if (finished(s, now, producers_running > 0, consumers_running > 0, drain)) break;
  }
  s.stop_producers = true;
  s.stop_consumers = true;
  for (auto& t : producer_threads) t.join();
  for (auto& t : consumer_threads) t.join();
  if (!s.first_error.empty()) return error(1, s.first_error);

  const int64_t produce_end =
      o.records > 0 ? s.producers_done_ns.load() : std::min(s.end_ns, s.producers_done_ns.load());
  result.produce = side_result(s.produced, o.mode != Mode::kConsume, s.measure_ns, produce_end);
  int64_t consume_end = 0;
  {
    std::lock_guard lock(s.consumed.mu);
    consume_end = s.consumed.last_ns;
    result.consumed_total = s.consumed.total;
    result.out_of_order = s.consumed.out_of_order;
  }
  result.consume = side_result(s.consumed, o.mode != Mode::kProduce, s.measure_ns, consume_end);
  {
    std::lock_guard lock(s.produced.mu);
    result.produced_total = s.produced.total;
  }
  result.complete = o.mode != Mode::kE2e || result.consumed_total == result.produced_total;
  return result;
}

}  // namespace sluice::bench
