// Checks and names of the bench options (bench.h); no I/O, so the unit tests need nothing else.
#include "bench/bench.h"
#include "common/assert.h"
#include "protocol/compression.h"

namespace sluice::bench {

Result<void> validate(const Options& o) {
  auto bad = [](const std::string& why) { return error(22, why); };
  if (o.topic.empty()) return bad("--topic must not be empty");
  if (o.partitions < 1) return bad("--partitions must be at least 1");
  if (o.record_bytes_min < kRecordBytesMin) return bad("record size must be at least 16 bytes");
  if (o.record_bytes_max < o.record_bytes_min) return bad("--record-size-max below the minimum");
  if (o.record_bytes_max > (1 << 20)) return bad("record size above 1 MiB");
  if (o.key_distribution != KeyDistribution::kNone && o.keys < 1) return bad("--keys must be >= 1");
  if (o.producers < 1 || o.producers > 1024) return bad("--producers must be in [1, 1024]");
  if (o.consumers < 1 || o.consumers > 1024) return bad("--consumers must be in [1, 1024]");
  if (o.rate_per_s < 0) return bad("--rate must be >= 0");
  if (o.records < 0) return bad("--records must be >= 0");
  if (o.records == 0 && o.duration_s <= 0) return bad("--duration must be > 0");
  if (o.warmup_s < 0) return bad("--warmup must be >= 0");
  if (o.acks != 0 && o.acks != 1 && o.acks != -1) return bad("--acks must be 0, 1 or all");
  if (!kafka::parse_compression(o.compression))
    return bad("unknown --compression " + o.compression);
  if (o.batch_bytes < 1) return bad("--batch-size must be >= 1");
  if (o.linger_ms < 0) return bad("--linger-ms must be >= 0");
  if (o.client == ClientKind::kRaw && !o.properties.empty()) {
    return bad("-X client settings need --client library (the raw client speaks PLAINTEXT only)");
  }
  return {};
}

std::string mode_name(Mode mode) {
  switch (mode) {
    case Mode::kProduce:
      return "produce";
    case Mode::kConsume:
      return "consume";
    case Mode::kE2e:
      return "e2e";
  }
  SLUICE_UNREACHABLE();
}

std::string key_distribution_name(KeyDistribution d) {
  switch (d) {
    case KeyDistribution::kNone:
      return "none";
    case KeyDistribution::kRandom:
      return "random";
    case KeyDistribution::kSequential:
      return "sequential";
  }
  SLUICE_UNREACHABLE();
}

}  // namespace sluice::bench
