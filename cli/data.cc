// sluice produce / sluice consume: records through pipes.
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>

#include "cli/cli.h"
#include "cli/codec.h"
#include "common/json.h"
#include "consumer/consumer.h"
#include "producer/producer.h"

namespace sluice::cli {

namespace {

using Clock = std::chrono::steady_clock;

std::atomic<bool> g_interrupted{false};

void on_signal(int) { g_interrupted = true; }

// Prints "\r<label> N records" to stderr at most once a second, only on a terminal; finish()
// shows the final count on the same line.
class Progress {
 public:
  explicit Progress(std::string label) : label_(std::move(label)), tty_(stderr_is_tty()) {}
  void tick(int64_t n) {
    if (!tty_) return;
    auto now = Clock::now();
    if (now - last_ < std::chrono::seconds(1)) return;
    last_ = now;
    show(n);
  }
  void finish(int64_t n) {
    if (shown_) {
      show(n);
      std::fprintf(stderr, "\n");
      shown_ = false;
    }
  }
  ~Progress() {
    if (shown_) std::fprintf(stderr, "\n");
  }

 private:
  void show(int64_t n) {
    std::fprintf(stderr, "\r%s %lld records", label_.c_str(), static_cast<long long>(n));
    shown_ = true;
  }
  std::string label_;
  bool tty_;
  bool shown_ = false;
  Clock::time_point last_ = Clock::now();
};

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// -X key=value pairs into a map; false (after a usage error) when one has no '='.
bool parse_properties(Context& ctx, const std::vector<std::string>& pairs,
                      std::map<std::string, std::string>& out) {
  for (const auto& p : pairs) {
    auto eq = p.find('=');
    if (eq == std::string::npos || eq == 0) {
      usage_error(ctx, "-X wants key=value, got '" + p + "'");
      return false;
    }
    out[p.substr(0, eq)] = p.substr(eq + 1);
  }
  return true;
}

// -X statistics.interval.ms=N: the libraries' stats, one JSON document a line on stderr (as
// kcat does), each in one write.
void print_stats(const std::string& json) {
  std::string line = json + "\n";
  std::fwrite(line.data(), 1, line.size(), stderr);
}

struct ProduceOptions {
  std::string topic;
  std::string file;
  std::string key_separator;
  std::string delimiter = "\\n";
  std::vector<std::string> headers;
  std::vector<std::string> properties;  // -X
  int32_t partition = -1;
  std::string acks = "all";
  std::string compression = "none";
  std::string encoding = "text";
  bool null_empty = false;
  int linger_ms = 5;
  int timeout_ms = 30000;
};

// Records separated by `delim` (any bytes); the last one may lack it.
class RecordReader {
 public:
  RecordReader(std::istream& in, std::string delim) : in_(in), delim_(std::move(delim)) {}
  bool next(std::string& out) {
    out.clear();
    const char last = delim_.back();
    std::string piece;
    while (std::getline(in_, piece, last)) {
      out += piece;
      if (in_.eof()) return true;  // no delimiter at the end of the input
      out += last;
      if (out.size() >= delim_.size() &&
          out.compare(out.size() - delim_.size(), delim_.size(), delim_) == 0) {
        out.resize(out.size() - delim_.size());
        return true;
      }
    }
    return !out.empty();
  }

 private:
  std::istream& in_;
  std::string delim_;
};

// A key or value as typed: base64-decoded with --encoding base64; empty means null with -Z.
bool decode_field(const ProduceOptions& o, std::string text, std::optional<std::string>& out) {
  if (o.null_empty && text.empty()) {
    out.reset();
    return true;
  }
  if (o.encoding == "base64") {
    auto d = base64_decode(text);
    if (!d) return false;
    out = std::move(*d);
  } else {
    out = std::move(text);
  }
  return true;
}

void produce(Context& ctx, const ProduceOptions& o) {
  ProducerConfig config;
  config.bootstrap_servers = ctx.brokers;
  config.client_id = "sluice-cli";
  if (o.acks == "all" || o.acks == "-1") {
    config.acks = -1;
  } else if (o.acks == "1" || o.acks == "0") {
    config.acks = std::stoi(o.acks);
  } else {
    return usage_error(ctx, "--acks must be 0, 1 or all");
  }
  if (o.encoding != "text" && o.encoding != "base64") {
    return usage_error(ctx, "--encoding must be text or base64");
  }
  if (o.delimiter.empty() || unescape(o.delimiter).empty()) {
    return usage_error(ctx, "--delimiter must not be empty");
  }
  config.compression = o.compression;
  config.linger_ms = o.linger_ms;
  config.delivery_timeout_ms = o.timeout_ms;
  config.request_timeout_ms = std::min(config.request_timeout_ms, o.timeout_ms);
  config.max_block_ms = o.timeout_ms;
  if (auto s = apply_properties(ctx, config); !s) return usage_error(ctx, s.error().message);
  std::map<std::string, std::string> props;
  if (!parse_properties(ctx, o.properties, props)) return;
  for (const auto& [k, v] : props) {
    if (auto s = set_config(config, k, v); !s) return usage_error(ctx, "-X " + s.error().message);
  }
  if (config.statistics_interval_ms > 0) config.stats_cb = print_stats;
  std::vector<Header> headers;
  for (const auto& h : o.headers) {
    auto eq = h.find('=');
    if (eq == std::string::npos)
      return usage_error(ctx, "--header wants key=value, got '" + h + "'");
    headers.push_back({h.substr(0, eq), h.substr(eq + 1)});
  }
  std::ifstream file;
  if (!o.file.empty()) {
    file.open(o.file, std::ios::binary);
    if (!file) return fail(ctx, "produce", Error{1, "cannot open " + o.file});
  }
  std::istream& in = o.file.empty() ? std::cin : file;
  auto created = Producer::create(config);
  if (!created) return fail(ctx, "produce", created.error());
  Producer& producer = **created;
  // The topic must exist: say so before reading stdin.
  auto count = producer.partition_count(o.topic);
  if (!count) return fail(ctx, "produce", count.error());

  std::mutex mu;
  Error first_error;
  int64_t failed = 0;
  std::atomic<bool> failing{false};
  int64_t sent = 0;
  Progress progress("produced");
  RecordReader reader(in, unescape(o.delimiter));
  const std::string key_sep = unescape(o.key_separator);
  std::string line;
  // The first failed delivery stops the reading: the broker went away or refuses the topic,
  // and the rest would fail the same way after the timeout.
  while (!g_interrupted && !failing && reader.next(line)) {
    ProducerRecord r;
    r.topic = o.topic;
    if (o.partition >= 0) r.partition = o.partition;
    std::string value_text = std::move(line);
    if (!key_sep.empty()) {
      auto at = value_text.find(key_sep);
      if (at != std::string::npos) {
        if (!decode_field(o, value_text.substr(0, at), r.key)) {
          return fail(ctx, "produce", Error{1, "record " + std::to_string(sent + 1) +
                                                   ": the key is not base64"});
        }
        value_text.erase(0, at + key_sep.size());
      }
    }
    if (!decode_field(o, std::move(value_text), r.value)) {
      return fail(ctx, "produce",
                  Error{1, "record " + std::to_string(sent + 1) + ": the value is not base64"});
    }
    r.headers = headers;
    Status s = producer.send(std::move(r), [&](const RecordMetadata& md) {
      if (md.ok()) return;
      std::lock_guard lock(mu);
      if (failed++ == 0) first_error = md.error;
      failing = true;
    });
    if (!s) return fail(ctx, "produce", s.error());
    progress.tick(++sent);
  }
  auto f = producer.flush(std::chrono::milliseconds(o.timeout_ms) * 2);
  progress.finish(sent);
  if (!f) return fail(ctx, "produce", f.error());
  producer.close();
  std::lock_guard lock(mu);
  if (failed > 0) {
    return fail(ctx,
                "produce: " + std::to_string(failed) + " of " + std::to_string(sent) +
                    " records failed" + (failing && !in.eof() ? " (stopped reading)" : ""),
                first_error);
  }
  if (ctx.verbose) {
    std::fprintf(stderr, "produced %lld records to %s\n", static_cast<long long>(sent),
                 o.topic.c_str());
  }
}

struct ConsumeOptions {
  std::string topic;
  std::string group;
  std::vector<int32_t> partitions;
  std::vector<std::string> from;
  std::string offset;  // -o
  std::vector<std::string> properties;  // -X
  int64_t count = -1;
  std::string format = "%v";
  std::string encoding = "text";
  bool json = false;
  bool exit_at_end = false;
  bool follow = false;
  int idle_timeout_ms = -1;
};

// A key, value or header value as a JSON string; bytes that are not UTF-8 as base64, with
// "<field>_encoding":"base64" next to it.
void json_field(std::string& out, const char* field, const std::optional<std::string_view>& s) {
  out += '"';
  out += field;
  out += "\":";
  if (!s) {
    out += "null";
  } else if (valid_utf8(*s)) {
    JsonWriter::escape(*s, out);
  } else {
    JsonWriter::escape(base64_encode(*s), out);
    out += ",\"";
    out += field;
    out += "_encoding\":\"base64\"";
  }
}

std::string render(const ConsumerRecord& r, const ConsumeOptions& o) {
  std::string out;
  if (o.json) {
    out += "{\"topic\":";
    JsonWriter::escape(r.topic, out);
    out += ",\"partition\":" + std::to_string(r.partition) +
           ",\"offset\":" + std::to_string(r.offset) +
           ",\"timestamp\":" + std::to_string(r.timestamp_ms) + ",";
    json_field(out, "key", r.key);
    out += ",";
    json_field(out, "value", r.value);
    out += ",\"headers\":[";
    for (size_t i = 0; i < r.headers.size(); ++i) {
      out += i ? ",{" : "{";
      json_field(out, "key", r.headers[i].key);
      out += ",";
      json_field(out, "value", r.headers[i].value);
      out += "}";
    }
    out += "]}\n";
    return out;
  }
  const bool b64 = o.encoding == "base64";
  auto field = [&](const std::optional<std::string_view>& v) {
    if (!v) return;
    if (b64) {
      out += base64_encode(*v);
    } else {
      out += *v;
    }
  };
  const std::string& f = o.format;
  for (size_t i = 0; i < f.size(); ++i) {
    if (f[i] == '\\' && i + 1 < f.size()) {
      char c = f[++i];
      out += c == 'n' ? '\n' : c == 't' ? '\t' : c == '0' ? '\0' : c;
      continue;
    }
    if (f[i] != '%' || i + 1 == f.size()) {
      out += f[i];
      continue;
    }
    switch (f[++i]) {
      case 'k':
        field(r.key);
        break;
      case 'v':
        field(r.value);
        break;
      case 'o':
        out += std::to_string(r.offset);
        break;
      case 'p':
        out += std::to_string(r.partition);
        break;
      case 't':
        out += std::to_string(r.timestamp_ms);
        break;
      case 'T':
        out += r.topic;
        break;
      case 'h':
        for (size_t h = 0; h < r.headers.size(); ++h) {
          if (h) out += ',';
          out += r.headers[h].key;
          out += '=';
          out += r.headers[h].value.value_or("");
        }
        break;
      case '%':
        out += '%';
        break;
      default:
        out += '%';
        out += f[i];
    }
  }
  out += '\n';
  return out;
}

// --from beginning | end | offset N | timestamp T, or -o SPEC, into one StartSpec.
std::optional<StartSpec> start_of(Context& ctx, const ConsumeOptions& o) {
  auto bad = [&](const std::string& m) -> std::optional<StartSpec> {
    usage_error(ctx, "consume: " + m);
    return std::nullopt;
  };
  if (!o.offset.empty() && !o.from.empty()) return bad("use --from or -o, not both");
  if (!o.offset.empty()) {
    auto s = parse_start(o.offset, now_ms());
    if (!s) {
      return bad("-o is beginning, end, N (an offset), -N (N before the end), @MS, @-1h or "
                 "@2026-01-31T12:00:00Z; got '" + o.offset + "'");
    }
    return s;
  }
  if (o.from.empty()) return StartSpec{StartSpec::kBeginning, 0};
  const std::string& mode = o.from[0];
  if (o.from.size() == 1) {
    if (mode == "offset" || mode == "timestamp") {
      return bad("--from " + mode + " needs a value, e.g. --from " + mode +
                 (mode == "offset" ? " 42" : " -1h"));
    }
    if (auto s = parse_start(mode, now_ms()); s && mode != "-0") return s;
    return bad("--from is beginning, end, offset N or timestamp T (ms, -1h, or "
               "2026-01-31T12:00:00Z); got '" + mode + "'");
  }
  if (mode == "offset") {
    auto s = parse_start(o.from[1], now_ms());
    if (!s || s->kind != StartSpec::kOffset) {
      if (s && s->kind == StartSpec::kFromEnd) {
        return bad("--from offset wants an offset >= 0; for the last " +
                   std::to_string(s->value) + " records use -o " + o.from[1]);
      }
      return bad("--from offset needs a number, got '" + o.from[1] + "'");
    }
    return s;
  }
  if (mode == "timestamp") {
    auto t = parse_time(o.from[1], now_ms());
    if (!t) {
      return bad("--from timestamp wants milliseconds, -DURATION (-1h, -30m) or "
                 "2026-01-31T12:00:00Z; got '" + o.from[1] + "'");
    }
    return StartSpec{StartSpec::kTimestamp, *t};
  }
  return bad("--from is beginning, end, offset N or timestamp T; got '" + mode + " " +
             o.from[1] + "'");
}

// Positions each hand-assigned partition per `start`. An offset outside a partition's
// [log start, end] is an error rather than a silent reset.
Status seek_all(Consumer& c, const std::vector<TopicPartition>& tps, const StartSpec& start) {
  switch (start.kind) {
    case StartSpec::kBeginning:
      return c.seek_to_beginning(tps);
    case StartSpec::kEnd:
      return c.seek_to_end(tps);
    case StartSpec::kTimestamp:
      return c.seek_to_timestamp(tps, start.value);
    case StartSpec::kOffset:
    case StartSpec::kFromEnd:
      break;
  }
  for (const auto& tp : tps) {
    auto w = c.watermark_offsets(tp);
    if (!w) return unexpected(w.error());
    auto [low, high] = *w;
    int64_t at = start.value;
    if (start.kind == StartSpec::kFromEnd) {
      at = std::max(low, high - start.value);
    } else if (at < low || at > high) {
      return unexpected(Error{
          static_cast<int>(client::Errc::kInvalidArgument),
          "offset " + std::to_string(at) + " is outside " + tp.topic + "[" +
              std::to_string(tp.partition) + "]'s range [" + std::to_string(low) + ", " +
              std::to_string(high) + "] (log start, end); -o -N starts N records before the end"});
    }
    if (auto s = c.seek(tp, at); !s) return s;
  }
  return {};
}

// True when every assigned partition's next record is at its high watermark.
bool at_end(Consumer& c) {
  auto tps = c.assignment();
  if (tps.empty()) return false;
  for (const auto& tp : tps) {
    auto p = c.position(tp);
    auto w = c.watermark_offsets(tp);
    if (!p || !w || *p < w->second) return false;
  }
  return true;
}

void consume(Context& ctx, const ConsumeOptions& o) {
  if (!o.group.empty() && !o.partitions.empty()) {
    return usage_error(ctx, "consume: use --group or --partition, not both");
  }
  if (o.encoding != "text" && o.encoding != "base64") {
    return usage_error(ctx, "consume: --encoding must be text or base64");
  }
  auto start = start_of(ctx, o);
  if (!start) return;
  if (!o.group.empty() && start->kind != StartSpec::kBeginning &&
      start->kind != StartSpec::kEnd) {
    return usage_error(ctx,
                       "consume: with --group, --from is beginning or end (where to start "
                       "without a committed offset); move a group with `sluice group "
                       "reset-offsets`");
  }
  ConsumeOptions opts = o;
  if (opts.format == "json") opts.json = true;
  ConsumerConfig config;
  config.bootstrap_servers = ctx.brokers;
  config.client_id = "sluice-cli";
  config.group_id = o.group;
  config.auto_offset_reset = start->kind == StartSpec::kEnd ? "latest" : "earliest";
  config.enable_auto_commit = false;  // commits follow what was printed, below
  if (auto s = apply_properties(ctx, config); !s) return usage_error(ctx, s.error().message);
  std::map<std::string, std::string> props;
  if (!parse_properties(ctx, o.properties, props)) return;
  for (const auto& [k, v] : props) {
    if (auto s = set_config(config, k, v); !s) return usage_error(ctx, "-X " + s.error().message);
  }
  if (config.statistics_interval_ms > 0) config.stats_cb = print_stats;
  auto consumer = Consumer::create(config);
  if (!consumer) return fail(ctx, "consume", consumer.error());
  Consumer& c = **consumer;
  auto n = c.partition_count(o.topic);
  if (!n) {
    return fail(
        ctx, "consume",
        Error{n.error().code, n.error().message + " (list topics with `sluice topic list`)"});
  }
  // The next offset after what was printed, per partition: what a group commits.
  std::map<TopicPartition, int64_t> printed;
  std::map<TopicPartition, int64_t> unprinted;  // first record returned but not printed
  Status commit_error;
  auto commit_printed = [&](const std::vector<TopicPartition>& tps) {
    std::map<TopicPartition, int64_t> offsets;
    for (const auto& tp : tps) {
      auto it = printed.find(tp);
      if (it != printed.end()) offsets.insert(*it);
    }
    for (const auto& tp : tps) printed.erase(tp);
    if (offsets.empty()) return;
    if (auto s = c.commit_sync(offsets); !s && commit_error) commit_error = s;
  };
  if (!o.group.empty()) {
    RebalanceListener listener;
    // Commit what was printed before another member takes the partitions over: it starts
    // where this one stopped, so every record is printed once across the group.
    listener.on_revoked = commit_printed;
    listener.on_lost = [&](const std::vector<TopicPartition>& tps) {
      for (const auto& tp : tps) printed.erase(tp);
    };
    if (auto s = c.subscribe({o.topic}, std::move(listener)); !s) {
      return fail(ctx, "consume", s.error());
    }
  } else {
    std::vector<TopicPartition> tps;
    if (o.partitions.empty()) {
      for (int32_t p = 0; p < *n; ++p) tps.push_back({o.topic, p});
    } else {
      for (int32_t p : o.partitions) {
        if (p < 0 || p >= *n) {
          return fail(ctx, "consume",
                      Error{static_cast<int>(client::Errc::kInvalidArgument),
                            "topic " + o.topic + " has partitions 0.." + std::to_string(*n - 1) +
                                ", not " + std::to_string(p)});
        }
        tps.push_back({o.topic, p});
      }
    }
    if (auto s = c.assign(tps); !s) return fail(ctx, "consume", s.error());
    if (auto s = seek_all(c, tps, *start); !s) return fail(ctx, "consume", s.error());
  }
  // -e, or --count without --follow: stop at the end of every partition.
  const bool stop_at_end = o.exit_at_end || (o.count >= 0 && !o.follow);
  int64_t seen = 0;
  Progress progress("consumed");
  auto last_record = Clock::now();
  std::string out;
  while (!g_interrupted && (o.count < 0 || seen < o.count)) {
    auto records = c.poll(std::chrono::milliseconds(200));
    if (!records) return fail(ctx, "consume", records.error());
    if (!commit_error) return fail(ctx, "consume: commit", commit_error.error());
    if (records->empty()) {
      if (o.idle_timeout_ms >= 0 &&
          Clock::now() - last_record > std::chrono::milliseconds(o.idle_timeout_ms))
        break;
      if (stop_at_end && at_end(c)) break;
      continue;
    }
    last_record = Clock::now();
    out.clear();
    for (const auto& r : *records) {
      if (o.count >= 0 && seen >= o.count) {  // handed out but not printed: not consumed
        unprinted.try_emplace({r.topic, r.partition}, r.offset);
        continue;
      }
      out += render(r, opts);
      printed[{r.topic, r.partition}] = r.offset + 1;
      ++seen;
    }
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::fflush(stdout);
    progress.tick(seen);
  }
  progress.finish(seen);
  if (!o.group.empty()) {
    // Exactly what was printed; partitions with nothing printed at their position, so the
    // group shows a committed offset (and lag) for every partition it read.
    for (const auto& tp : c.assignment()) {
      if (auto u = unprinted.find(tp); u != unprinted.end()) {
        printed[tp] = u->second;
      } else if (auto p = c.position(tp); p && !printed.contains(tp)) {
        printed[tp] = *p;
      }
    }
    commit_printed(c.assignment());
    if (!commit_error) return fail(ctx, "consume: commit", commit_error.error());
  }
  c.close();
  if (ctx.verbose) {
    std::fprintf(stderr, "consumed %lld records from %s\n", static_cast<long long>(seen),
                 o.topic.c_str());
  }
}

}  // namespace

void register_produce(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<ProduceOptions>();
  auto* cmd = app.add_subcommand(
      "produce", "Send records read from stdin (one per line, or per --delimiter) or a file");
  cmd->add_option("topic", o->topic, "Topic")->required();
  cmd->add_option("-f,--file", o->file, "Read records from this file instead of stdin");
  cmd->add_option("-K,--key-separator", o->key_separator,
                  "Split each record into key and value at the first SEP (\\t escapes work)");
  cmd->add_option("-D,--delimiter", o->delimiter,
                  "Record delimiter, any bytes: \\n \\t \\r \\0 \\xHH escapes (e.g. -D '\\0')")
      ->capture_default_str();
  cmd->add_option("-H,--header", o->headers, "Header key=value on every record (repeatable)");
  cmd->add_option("-p,--partition", o->partition,
                  "Send to this partition (default: by key, or sticky)");
  cmd->add_option("-a,--acks", o->acks, "0, 1 or all")->capture_default_str();
  cmd->add_option("-z,--compression", o->compression, "none, gzip, snappy, lz4, zstd")
      ->capture_default_str();
  cmd->add_option("--encoding", o->encoding,
                  "text, or base64: keys and values are base64 (binary data)")
      ->capture_default_str();
  cmd->add_flag("-Z,--null-empty", o->null_empty,
                "An empty value (or key) is sent as null: a tombstone for compacted topics");
  cmd->add_option("--linger-ms", o->linger_ms, "Batching delay")->capture_default_str();
  cmd->add_option("--timeout", o->timeout_ms,
                  "Give up on a record after this many ms (delivery.timeout.ms); the first "
                  "failure stops the reading")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600000));
  cmd->add_option("-X", o->properties,
                  "Producer setting by its Kafka name, e.g. -X linger.ms=20 (repeatable)");
  cmd->callback([&ctx, o] {
    std::signal(SIGINT, on_signal);
    produce(ctx, *o);
  });
}

void register_consume(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<ConsumeOptions>();
  auto* cmd = app.add_subcommand("consume", "Print records of a topic to stdout");
  cmd->add_option("topic", o->topic, "Topic")->required();
  cmd->add_option("-g,--group", o->group, "Consume as a member of this group (commits offsets)");
  cmd->add_option("-p,--partition", o->partitions, "Only these partitions (repeatable)");
  cmd->add_option("--from", o->from,
                  "beginning | end | offset N | timestamp T (ms, -1h, 2026-01-31T12:00:00Z); "
                  "default beginning; with --group only when the group has no committed offset")
      ->expected(1, 2);
  cmd->add_option("-o,--offset", o->offset,
                  "kcat style: beginning, end, N, -N (N before the end), @MS, @-1h, @DATE");
  cmd->add_option("-c,--count", o->count,
                  "Stop after this many records, or at the end of the topic if it has fewer "
                  "(--follow: wait for them)");
  cmd->add_flag("-e,--exit-at-end", o->exit_at_end,
                "Exit once every partition's end is reached (kcat -e)");
  cmd->add_flag("-f,--follow", o->follow, "With --count: wait for records past the end");
  cmd->add_option(
         "--format", o->format,
         "Output per record: %k key, %v value, %o offset, %p partition, %t timestamp, %h headers, "
         "%T topic, \\n \\t \\0; a newline follows. `json`: same as --json")
      ->capture_default_str();
  cmd->add_option("--encoding", o->encoding, "text, or base64: %k and %v as base64")
      ->capture_default_str();
  cmd->add_flag("--json", o->json,
                "One JSON object per record (bytes that are not UTF-8 as base64, with "
                "\"value_encoding\":\"base64\")");
  cmd->add_option("--idle-timeout-ms", o->idle_timeout_ms,
                  "Exit after this long without records (default: wait)");
  cmd->add_option("-X", o->properties,
                  "Consumer setting by its Kafka name, e.g. -X fetch.max.bytes=1048576");
  cmd->callback([&ctx, o] {
    std::signal(SIGINT, on_signal);
    consume(ctx, *o);
  });
}

}  // namespace sluice::cli
