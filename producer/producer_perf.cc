// producer_perf: producer throughput of the Sluice library (scripts/perf-producer compares it
// with librdkafka on the same broker and workload).
//   producer_perf BROKERS TOPIC RECORDS RECORD_BYTES COMPRESSION ACKS
// Prints one line: "records=N bytes=B seconds=S records_per_s=R mib_per_s=M".
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "producer/producer.h"

int main(int argc, char** argv) {
  if (argc != 7) {
    std::fprintf(stderr,
                 "usage: producer_perf BROKERS TOPIC RECORDS RECORD_BYTES COMPRESSION ACKS\n");
    return 2;
  }
  sluice::ProducerConfig config;
  config.bootstrap_servers = argv[1];
  const std::string topic = argv[2];
  const long records = std::atol(argv[3]);
  const size_t size = static_cast<size_t>(std::atol(argv[4]));
  config.compression = argv[5];
  config.acks = std::string(argv[6]) == "all" ? -1 : std::atoi(argv[6]);
  auto producer = sluice::Producer::create(config);
  if (!producer) {
    std::fprintf(stderr, "producer_perf: %s\n", producer.error().message.c_str());
    return 1;
  }
  // Compressible but not trivial payload: a repeating 64-byte pattern with a counter.
  std::string payload(size, 'x');
  for (size_t i = 0; i < size; ++i) payload[i] = static_cast<char>('a' + (i * 7 + i / 64) % 26);
  std::atomic<long> failed{0};
  const auto start = std::chrono::steady_clock::now();
  for (long i = 0; i < records; ++i) {
    sluice::ProducerRecord r{.topic = topic, .value = payload};
    const std::string n = std::to_string(i);  // make each record distinct
    r.value->replace(0, std::min(n.size(), size), n, 0, std::min(n.size(), size));
    auto s = (*producer)->send(std::move(r), [&failed](const sluice::RecordMetadata& md) {
      if (!md.ok()) failed++;
    });
    if (!s) {
      std::fprintf(stderr, "producer_perf: %s\n", s.error().message.c_str());
      return 1;
    }
  }
  if (auto s = (*producer)->flush(); !s) {
    std::fprintf(stderr, "producer_perf: %s\n", s.error().message.c_str());
    return 1;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  (*producer)->close();
  if (failed > 0) {
    std::fprintf(stderr, "producer_perf: %ld records failed\n", failed.load());
    return 1;
  }
  std::printf("records=%ld bytes=%ld seconds=%.3f records_per_s=%.0f mib_per_s=%.1f\n", records,
              records * static_cast<long>(size), seconds, records / seconds,
              records * static_cast<double>(size) / seconds / (1 << 20));
  return 0;
}
