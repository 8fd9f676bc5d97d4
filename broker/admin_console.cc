// The web console's files (broker/console/, embedded at build time) and the admin endpoint
// only it needs: the last records of a partition (broker/README.md, "Web console").
#include <spdlog/spdlog.h>

#include <algorithm>

#include "broker/broker.h"
#include "broker/console.h"
#include "broker/log_format.h"
#include "protocol/record_batch.h"

namespace sluice::broker {

namespace console {

const EmbeddedFile* find_file(std::string_view path) {
  if (path == "/" || path.empty()) path = "/index.html";
  for (size_t i = 0; i < kEmbeddedFileCount; ++i) {
    if (kEmbeddedFiles[i].path == path) return &kEmbeddedFiles[i];
  }
  return nullptr;
}

std::string_view content_type(std::string_view path) {
  if (path.ends_with(".html") || path == "/") return "text/html; charset=utf-8";
  if (path.ends_with(".js")) return "text/javascript; charset=utf-8";
  if (path.ends_with(".css")) return "text/css; charset=utf-8";
  if (path.ends_with(".png")) return "image/png";
  if (path.ends_with(".svg")) return "image/svg+xml";
  return "application/octet-stream";
}

}  // namespace console

namespace {

// True when `b` is valid UTF-8 without control characters other than tab, CR and LF: such
// bytes are shown as text, anything else as base64 (the page renders it as hex).
bool printable_utf8(Bytes b) {
  const std::string_view s(reinterpret_cast<const char*>(b.data()), b.size());
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8_sequence(s.substr(i));
    if (n == 0) return false;
    const auto c = static_cast<unsigned char>(s[i]);
    if (n == 1 && ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f)) return false;
    i += n;
  }
  return true;
}

std::string base64(Bytes b) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((b.size() + 2) / 3 * 4);
  for (size_t i = 0; i < b.size(); i += 3) {
    uint32_t v = static_cast<uint32_t>(static_cast<unsigned char>(b[i])) << 16;
    if (i + 1 < b.size()) v |= static_cast<uint32_t>(static_cast<unsigned char>(b[i + 1])) << 8;
    if (i + 2 < b.size()) v |= static_cast<unsigned char>(b[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < b.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += i + 2 < b.size() ? kAlphabet[v & 63] : '=';
  }
  return out;
}

// {"size": n, "text": "..."} or {"size": n, "base64": "..."}, cut to kShownBytesMax bytes
// ("truncated": true); null for a null key or value.
constexpr size_t kShownBytesMax = 4096;

void write_bytes(JsonWriter& w, std::string_view name, const std::optional<Bytes>& bytes) {
  w.key(name);
  if (!bytes) {
    w.null();
    return;
  }
  Bytes shown = bytes->subspan(0, std::min(bytes->size(), kShownBytesMax));
  w.begin_object().field("size", static_cast<uint64_t>(bytes->size()));
  // A cut may split a UTF-8 sequence: back up to its start (at most 3 bytes).
  Bytes text = shown;
  if (shown.size() < bytes->size()) {
    size_t end = shown.size();
    for (int k = 0; k < 3 && end > 0 &&
                    (static_cast<unsigned char>(shown[end - 1]) & 0xc0) == 0x80;
         ++k) {
      --end;
    }
    if (end > 0 && static_cast<unsigned char>(shown[end - 1]) >= 0xc0) --end;
    text = shown.subspan(0, end);
  }
  if (printable_utf8(text)) {
    w.field("text", std::string_view(reinterpret_cast<const char*>(text.data()), text.size()));
  } else {
    w.field("base64", base64(shown));
  }
  if (shown.size() < bytes->size()) w.field("truncated", true);
  w.end_object();
}

}  // namespace

AdminResponse Broker::admin_console_file(std::string_view path) {
  const console::EmbeddedFile* f = console::find_file(path);
  if (!f) return json_error_response(404, "no such endpoint; GET /v1 lists them");
  return AdminResponse{200, std::string(console::content_type(f->path)), std::string(f->bytes)};
}

void Broker::admin_records(const std::string& topic, int32_t partition, int32_t limit,
                           std::function<void(AdminResponse)> done) {
  auto snap = registry_->snapshot();
  const TopicInfo* t = snap->find(topic);
  if (!t) return done(json_error_response(404, "no topic '" + topic + "'"));
  if (partition < 0 || partition >= t->partitions) {
    return done(json_error_response(404, "topic '" + topic + "' has no partition " +
                                      std::to_string(partition)));
  }
  const TopicPartition tp{topic, partition};
  ShardState& ss = shard_of(tp);
  ss.shard.post([&ss, tp, limit, node = config_.node_id, done] {
    Partition* p = ss.find(tp);
    if (!p) {
      return done(json_error_response(
          404, "partition " + std::to_string(tp.partition) + " of '" + tp.topic +
                   "' has no replica on broker " + std::to_string(node) +
                   "; ask a broker that holds one (GET /v1/topics/{name} names them)"));
    }
    // Committed records only (below the high watermark), the last `limit` of them.
    const int64_t hwm = p->high_watermark();
    const int64_t start = *p->log->log_start_offset();
    const int64_t from = std::max(start, hwm - limit);
    // Reads are bounded: kReadBytesMax per call, kTotalBytesMax in all (a huge batch is cut
    // short and said so).
    constexpr uint64_t kReadBytesMax = 1 << 20;
    constexpr uint64_t kTotalBytesMax = 8 << 20;
    JsonWriter w;
    w.begin_object()
        .field("topic", tp.topic)
        .field("partition", tp.partition)
        .field("broker", node)
        .field("log_start_offset", start)
        .field("high_watermark", hwm)
        .key("records")
        .begin_array();
    int64_t next = from;
    uint64_t read_bytes = 0;
    std::vector<std::byte> scratch;
    std::string error;
    while (next < hwm && read_bytes < kTotalBytesMax) {
      auto bytes = p->log->read_copy(Offset(next), kReadBytesMax, Offset(hwm));
      if (!bytes) {
        error = bytes.error().message;
        break;
      }
      if (bytes->empty()) break;
      read_bytes += bytes->size();
      kafka::BatchIterator batches(*bytes);
      int64_t last = next - 1;
      for (;;) {
        auto batch = batches.next();
        if (!batch || !batch->has_value()) break;
        const kafka::RecordBatchView& b = **batch;
        last = std::max(last, b.last_offset());
        if (b.is_control()) continue;
        auto records = b.records(scratch);
        if (!records) {
          error = records.error().message;
          break;
        }
        for (;;) {
          auto r = records->next();
          if (!r) {
            error = r.error().message;
            break;
          }
          if (!r->has_value()) break;
          const kafka::Record& rec = **r;
          const int64_t offset = b.base_offset() + rec.offset_delta;
          if (offset < from || offset >= hwm) continue;
          const int64_t ts = b.timestamp_type() == kafka::TimestampType::kLogAppendTime
                                 ? b.max_timestamp()
                                 : b.base_timestamp() + rec.timestamp_delta;
          w.begin_object().field("offset", offset).field("timestamp", ts);
          write_bytes(w, "key", rec.key);
          write_bytes(w, "value", rec.value);
          w.key("headers").begin_array();
          kafka::HeaderReader headers(rec.headers, rec.header_count);
          for (;;) {
            auto h = headers.next();
            if (!h || !h->has_value()) break;
            w.begin_object().field("key", (*h)->key);
            write_bytes(w, "value", (*h)->value);
            w.end_object();
          }
          w.end_array().end_object();
        }
        if (!error.empty()) break;
      }
      if (!error.empty() || last < next) break;
      next = last + 1;
    }
    w.end_array();
    if (!error.empty()) w.field("error", error);
    if (next < hwm && error.empty() && read_bytes >= kTotalBytesMax) w.field("cut_short", true);
    w.end_object();
    done(json_response(200, w.take()));
  });
}

}  // namespace sluice::broker
