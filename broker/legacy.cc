#include "broker/legacy.h"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>

#include "protocol/legacy_messages.h"

namespace sluice::broker {

using kafka::ErrorCode;

namespace {

constexpr auto kWarnInterval = std::chrono::seconds(10);

}  // namespace

ErrorCode up_convert_produce(const kafka::Records& records,
                             std::deque<std::vector<std::byte>>& store,
                             std::vector<std::byte>*& converted, std::string& why) {
  converted = nullptr;
  if (records.is_null() || records.size() == 0) {
    why = "no message set";
    return ErrorCode::kInvalidRecord;
  }
  if (kafka::magic_at(records.bytes()) >= kafka::kMagicV2) {
    // As Kafka: a record batch v2 needs Produce v3 or later.
    why = "record batch v2 in Produce v0-2; use Produce v3 or later";
    return ErrorCode::kInvalidRecord;
  }
  auto up = kafka::up_convert_message_set(records.bytes());
  if (!up) {
    why = "message set: " + up.error().message;
    switch (up.error().code) {
      case kafka::BatchErrc::kBadMagic:
      case kafka::BatchErrc::kBadCodec:
      case kafka::BatchErrc::kMismatch:
        return ErrorCode::kInvalidRecord;
      default:
        return ErrorCode::kCorruptMessage;
    }
  }
  converted = &store.emplace_back(std::move(up->batch));
  return ErrorCode::kNone;
}

ErrorCode down_convert_bytes(std::span<const std::byte> in, int8_t magic, int64_t from_offset,
                             size_t max_bytes, std::optional<std::vector<std::byte>>& out,
                             int64_t& messages) {
  std::vector<std::byte> scratch;
  out.emplace();
  out->reserve(std::min(max_bytes, in.size() * 2));
  auto r = kafka::down_convert(in, magic, from_offset, max_bytes, *out, scratch);
  if (!r) {
    spdlog::error("fetch down-conversion to magic {} from offset {}: {}", magic, from_offset,
                  r.error().message);
    out.reset();
    return ErrorCode::kCorruptMessage;
  }
  messages = r->messages;
  return ErrorCode::kNone;
}

namespace {

// One down_convert_range_async in flight: reads the range in as many ring reads as it takes
// (a read may return fewer bytes than asked), then converts.
struct RangeConversion : std::enable_shared_from_this<RangeConversion> {
  log::IoRing* ring = nullptr;
  log::FileRange range;
  int8_t magic = 0;
  int64_t from_offset = 0;
  size_t max_bytes = 0;
  DownConverted done;
  std::vector<std::byte> in;
  size_t read = 0;

  void next() {  // (a range of 0 bytes reads 0 bytes once, and converts)
    ring->read(range.fd(), MutableBytes(in).subspan(read), range.position + read,
               [self = shared_from_this()](int32_t result) { self->got(result); });
  }

  void got(int32_t result) {
    if (result < 0 || (result == 0 && read < in.size())) {
      spdlog::error("fetch down-conversion: reading {} bytes at {} failed: {}", in.size(),
                    range.position + read, result < 0 ? std::strerror(-result) : "end of file");
      done(ErrorCode::kKafkaStorageError, std::nullopt, 0);
      return;
    }
    read += static_cast<size_t>(result);
    if (read < in.size()) {
      next();
      ring->submit();
      return;
    }
    std::optional<std::vector<std::byte>> out;
    int64_t messages = 0;
    const ErrorCode e = down_convert_bytes(in, magic, from_offset, max_bytes, out, messages);
    in = {};
    range.file.reset();
    done(e, std::move(out), messages);
  }
};

}  // namespace

void down_convert_range_async(log::IoRing& ring, log::FileRange range, int8_t magic,
                              int64_t from_offset, size_t max_bytes, DownConverted done) {
  auto op = std::make_shared<RangeConversion>();
  op->ring = &ring;
  op->in.resize(range.length);
  op->range = std::move(range);
  op->magic = magic;
  op->from_offset = from_offset;
  op->max_bytes = max_bytes;
  op->done = std::move(done);
  op->next();
  ring.submit();
}

int8_t fetch_magic(int16_t fetch_version) {
  if (fetch_version < 2) return kafka::kMagicV0;
  if (fetch_version < 4) return kafka::kMagicV1;
  return -1;
}

bool RateLimitedWarning::warn(const std::string& key, std::string_view line) {
  const auto now = std::chrono::steady_clock::now();
  uint64_t held_back = 0;
  {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(key);
    if (it != entries_.end() && now - it->second.logged < interval_) {
      ++it->second.held_back;
      return false;
    }
    if (it == entries_.end()) {
      if (entries_.size() >= kKeysMax) {
        // Forget the quiet ones; if every key is recent, forget them all (a flood of clients).
        std::erase_if(entries_, [&](const auto& e) { return now - e.second.logged >= interval_; });
        if (entries_.size() >= kKeysMax) entries_.clear();
      }
      it = entries_.emplace(key, Entry{}).first;
    }
    held_back = it->second.held_back;
    it->second = Entry{now, 0};
  }
  if (held_back > 0) {
    spdlog::warn("{} ({} more like it from this client in the last {} s)", line, held_back,
                 std::chrono::duration_cast<std::chrono::seconds>(interval_).count());
  } else {
    spdlog::warn("{}", line);
  }
  return true;
}

std::string client_key(const ConnectionInfo& conn, std::string_view client_id) {
  std::string_view host = conn.peer;
  if (auto colon = host.rfind(':'); colon != std::string_view::npos) host = host.substr(0, colon);
  std::string key(host);
  key += '/';
  key += client_id;
  return key;
}

void warn_not_served(const ConnectionInfo& conn, std::string_view client_id, int16_t key,
                     int16_t version) {
  static RateLimitedWarning limiter(kWarnInterval);
  // Per client and API version: a retrying client repeats one request; different bad
  // requests each still get their line.
  limiter.warn(client_key(conn, client_id) + "/not-served/" + std::to_string(key) + "/" +
                   std::to_string(version),
               fmt::format("connection {} from {} ({}): closing, API key {} version {} is not "
                           "served",
                           conn.id, conn.peer, client_id, key, version));
}

void legacy_rejected(const ConnectionInfo& conn, std::string_view client_id,
                     std::string_view topic, int32_t partition, std::string_view why) {
  static RateLimitedWarning limiter(kWarnInterval);
  limiter.warn(client_key(conn, client_id) + "/produce",
               fmt::format("connection {} from {} ({}): Produce v0-2 to {}-{} refused: {}",
                           conn.id, conn.peer, client_id, topic, partition, why));
}

}  // namespace sluice::broker
