// Older Kafka clients (issue #22): Produce v0-2 message sets up-converted to record batch v2,
// Fetch v0-3 answers down-converted to magic 0/1, and a per-client rate limit for the warnings
// such clients cause when they retry. The conversions themselves are in
// protocol/legacy_messages.h; this is the broker's side of them.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "broker/connection.h"
#include "log/io_ring.h"
#include "log/log.h"
#include "protocol/codec.h"
#include "protocol/error_codes.h"

namespace sluice::broker {

// Up-converts one Produce v0-2 partition's message set. On success the v2 batch is appended to
// `store` and `converted` points at it; otherwise `why` says what is wrong and the result is
// INVALID_RECORD (format) or CORRUPT_MESSAGE (framing, CRC, compressed data).
kafka::ErrorCode up_convert_produce(const kafka::Records& records,
                                    std::deque<std::vector<std::byte>>& store,
                                    std::vector<std::byte>*& converted, std::string& why);

// The message format a Fetch version returns: magic 0 for v0-1, 1 for v2-3, -1 (record
// batch v2, zero copy) from v4.
int8_t fetch_magic(int16_t fetch_version);

// Fetch v0-3: down-converts the records of `in` (whole v2 batches) from `from_offset` into
// `out` as messages of `magic`, at most `max_bytes` of them but always one (see
// kafka::down_convert). Memory: the output plus one batch's decompression buffer (at most
// 64 MiB). `messages` is set to the number of messages. Errors: a batch that does not parse
// (CORRUPT_MESSAGE), logged.
kafka::ErrorCode down_convert_bytes(std::span<const std::byte> in, int8_t magic,
                                    int64_t from_offset, size_t max_bytes,
                                    std::optional<std::vector<std::byte>>& out,
                                    int64_t& messages);

// Fetch v0-3 on a partition's shard: reads `range` through `ring` (never on the calling
// thread: a pread of up to kLegacyFetchBytesMax would hold the shard; issue #18) and
// down-converts it as down_convert_bytes does. `done(error, out, messages)` runs once, from
// the ring's completions on the ring's thread (never within this call); `range.file` is held
// until then. A read that fails or finds the file short gives KAFKA_STORAGE_ERROR, logged.
using DownConverted =
    std::function<void(kafka::ErrorCode, std::optional<std::vector<std::byte>>, int64_t)>;
void down_convert_range_async(log::IoRing& ring, log::FileRange range, int8_t magic,
                              int64_t from_offset, size_t max_bytes, DownConverted done);

// A Fetch v0-3 request's partitions share this many bytes of down-conversion input, at least
// kLegacyFetchPartitionBytesMin each (a partition's first batch goes whatever its size).
inline constexpr int64_t kLegacyFetchBytesMax = 64ll << 20;
inline constexpr int64_t kLegacyFetchPartitionBytesMin = 64ll << 10;
inline int64_t legacy_partition_bytes_max(size_t partitions) {
  const auto n = static_cast<int64_t>(std::max<size_t>(1, partitions));
  return std::max(kLegacyFetchPartitionBytesMin, kLegacyFetchBytesMax / n);
}

// One warning line per key (a client: its host and client id) per interval; the lines held
// back meanwhile are counted and the next line says how many. Thread-safe; at most
// kKeysMax keys are remembered (the oldest are forgotten first).
class RateLimitedWarning {
 public:
  static constexpr size_t kKeysMax = 4096;
  explicit RateLimitedWarning(std::chrono::steady_clock::duration interval)
      : interval_(interval) {}
  // Logs `line` (with the count of lines held back since the last one) or counts it.
  // Returns whether it was logged.
  bool warn(const std::string& key, std::string_view line);

 private:
  struct Entry {
    std::chrono::steady_clock::time_point logged;
    uint64_t held_back = 0;
  };
  std::chrono::steady_clock::duration interval_;
  std::mutex mutex_;
  std::unordered_map<std::string, Entry> entries_;
};

// The key of a client for RateLimitedWarning: its host (not the port, which a reconnecting
// client changes) and client id.
std::string client_key(const ConnectionInfo& conn, std::string_view client_id);

// "API key K version V is not served" for a client, rate-limited (10 s per client, API key
// and version).
void warn_not_served(const ConnectionInfo& conn, std::string_view client_id, int16_t key,
                     int16_t version);

// A Produce v0-2 message set that was refused, rate-limited (10 s per client).
void legacy_rejected(const ConnectionInfo& conn, std::string_view client_id,
                     std::string_view topic, int32_t partition, std::string_view why);

}  // namespace sluice::broker
