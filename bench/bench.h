// sluice bench: the load generator behind `sluice bench produce|consume|e2e`.
//
// run() creates the topic when missing, runs producers and/or consumers on their own threads
// for a warm-up (discarded) and then a measured phase, prints a progress line to stderr each
// second, and returns what was measured. Latency is measured from each record's intended send
// time (see rate_limiter.h): produce latency is send-to-acknowledgement, end-to-end latency is
// send-to-receive, read from the timestamp the producer writes in each record's value.
//
// Record value layout (big-endian): [0, 8) intended send time, steady clock ns; [8, 16)
// producer index << 48 | sequence number; then filler up to the record size (>= 16).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "bench/histogram.h"
#include "common/result.h"

namespace sluice::bench {

enum class Mode : uint8_t { kProduce, kConsume, kE2e };
enum class KeyDistribution : uint8_t { kNone, kRandom, kSequential };
// Which client carries the records: the sluice::Producer / sluice::Consumer libraries, or
// the load generator's own codec-level client (one connection per thread, no retries).
enum class ClientKind : uint8_t { kLibrary, kRaw };

inline constexpr int32_t kRecordBytesMin = 16;  // timestamp + id

struct Options {
  Mode mode = Mode::kProduce;
  std::string bootstrap = "127.0.0.1:9092";
  std::string topic = "sluice-bench";
  int32_t partitions = 1;  // used when the topic is created
  int32_t record_bytes_min = 1024;
  int32_t record_bytes_max = 1024;
  KeyDistribution key_distribution = KeyDistribution::kNone;
  int64_t keys = 1000;
  int32_t producers = 1;
  int32_t consumers = 1;
  double rate_per_s = 0;  // records/s over all producers; 0 = as fast as possible
  double duration_s = 10;
  int64_t records = 0;  // measured records to produce (or consume); 0 = run for duration_s
  double warmup_s = 5;
  int16_t acks = -1;  // all: the same defaults as the producer library and `sluice produce`
  std::string compression = "none";
  int32_t batch_bytes = 1 << 20;
  int32_t linger_ms = 5;
  double drain_timeout_s = 10;  // e2e/consume: give up waiting for records after this long idle
  ClientKind client = ClientKind::kLibrary;
  uint64_t seed = 1;
  bool progress = true;  // the stderr line each second
  // Client settings by Kafka name for every connection (-X, and `sluice`'s -X and
  // --command-config): security.protocol, ssl.ca.location, sasl.username, ... Library client
  // only.
  std::map<std::string, std::string> properties;
};

// Checks the options; the message names the bad setting.
Result<void> validate(const Options& options);
std::string mode_name(Mode mode);
std::string key_distribution_name(KeyDistribution d);

struct SideResult {
  bool active = false;
  int64_t records = 0;  // measured (after the warm-up), acknowledged or received
  int64_t bytes = 0;    // value bytes of those records
  int64_t errors = 0;   // records whose produce failed
  double seconds = 0;   // length of the measured phase for this side
  Histogram latency;    // microseconds; empty for the consume mode
  double records_per_s() const { return seconds > 0 ? static_cast<double>(records) / seconds : 0; }
  double mb_per_s() const { return seconds > 0 ? static_cast<double>(bytes) / 1e6 / seconds : 0; }
};

// One second of the run (warm-up included).
struct Sample {
  double t_s = 0;  // end of the second, from the start of the run
  bool warmup = false;
  double produce_records_per_s = 0, produce_mb_per_s = 0;
  double consume_records_per_s = 0, consume_mb_per_s = 0;
  int64_t p50_us = 0, p99_us = 0, max_us = 0;  // produce latency (e2e in the e2e mode)
};

struct RunResult {
  Options options;
  int32_t partitions = 0;  // of the topic as found or created
  SideResult produce;
  SideResult consume;
  std::vector<Sample> samples;
  // Correctness, over the whole run including the warm-up.
  int64_t produced_total = 0;  // acknowledged records
  int64_t consumed_total = 0;
  int64_t out_of_order = 0;  // e2e: records seen at or below a sequence already seen
  bool complete = true;      // e2e: every acknowledged record was consumed
};

Result<RunResult> run(const Options& options);

// Renderings of a result (report.cc).
std::string summary_table(const RunResult& result);
std::string to_json(const RunResult& result);
std::string to_html(const RunResult& result);

}  // namespace sluice::bench
