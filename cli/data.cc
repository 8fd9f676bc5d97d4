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
#include "common/json.h"
#include "consumer/consumer.h"
#include "producer/producer.h"

namespace sluice::cli {

namespace {

using Clock = std::chrono::steady_clock;

std::atomic<bool> g_interrupted{false};

void on_signal(int) { g_interrupted = true; }

// Prints "\r<label> N records" to stderr at most once a second, only on a terminal.
class Progress {
 public:
  explicit Progress(std::string label) : label_(std::move(label)), tty_(stderr_is_tty()) {}
  void tick(int64_t n) {
    if (!tty_) return;
    auto now = Clock::now();
    if (now - last_ < std::chrono::seconds(1)) return;
    last_ = now;
    std::fprintf(stderr, "\r%s %lld records", label_.c_str(), static_cast<long long>(n));
    shown_ = true;
  }
  ~Progress() {
    if (shown_) std::fprintf(stderr, "\n");
  }

 private:
  std::string label_;
  bool tty_;
  bool shown_ = false;
  Clock::time_point last_ = Clock::now();
};

struct ProduceOptions {
  std::string topic;
  std::string file;
  std::string key_separator;
  std::vector<std::string> headers;
  int32_t partition = -1;
  std::string acks = "all";
  std::string compression = "none";
  int linger_ms = 5;
};

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
  config.compression = o.compression;
  config.linger_ms = o.linger_ms;
  std::vector<Header> headers;
  for (const auto& h : o.headers) {
    auto eq = h.find('=');
    if (eq == std::string::npos)
      return usage_error(ctx, "--header wants key=value, got '" + h + "'");
    headers.push_back({h.substr(0, eq), h.substr(eq + 1)});
  }
  std::ifstream file;
  if (!o.file.empty()) {
    file.open(o.file);
    if (!file) return fail(ctx, "produce", Error{1, "cannot open " + o.file});
  }
  std::istream& in = o.file.empty() ? std::cin : file;
  auto producer = Producer::create(config);
  if (!producer) return fail(ctx, "produce", producer.error());
  // The topic must exist: say so before reading stdin.
  auto count = (*producer)->partition_count(o.topic);
  if (!count) return fail(ctx, "produce", count.error());

  std::mutex mu;
  Error first_error;
  int64_t failed = 0;
  int64_t sent = 0;
  Progress progress("produced");
  std::string line;
  while (!g_interrupted && std::getline(in, line)) {
    ProducerRecord r;
    r.topic = o.topic;
    if (o.partition >= 0) r.partition = o.partition;
    if (!o.key_separator.empty()) {
      auto at = line.find(o.key_separator);
      if (at != std::string::npos) {
        r.key = line.substr(0, at);
        line.erase(0, at + o.key_separator.size());
      }
    }
    r.value = std::move(line);
    r.headers = headers;
    Status s = (*producer)->send(std::move(r), [&](const RecordMetadata& md) {
      if (md.ok()) return;
      std::lock_guard lock(mu);
      if (failed++ == 0) first_error = md.error;
    });
    if (!s) return fail(ctx, "produce", s.error());
    progress.tick(++sent);
  }
  auto f = (*producer)->flush();
  if (!f) return fail(ctx, "produce", f.error());
  (*producer)->close();
  if (failed > 0) {
    fail(ctx,
         "produce: " + std::to_string(failed) + " of " + std::to_string(sent) + " records failed",
         first_error);
  }
}

struct ConsumeOptions {
  std::string topic;
  std::string group;
  std::vector<int32_t> partitions;
  std::vector<std::string> from = {"beginning"};
  int64_t count = -1;
  std::string format = "%v";
  bool json = false;
  int idle_timeout_ms = -1;
};

void json_string(std::string& out, const std::optional<std::string>& s) {
  if (!s) {
    out += "null";
    return;
  }
  JsonWriter::escape(*s, out);
}

std::string render(const ConsumerRecord& r, const ConsumeOptions& o) {
  std::string out;
  if (o.json) {
    out += "{\"topic\":";
    json_string(out, r.topic);
    out += ",\"partition\":" + std::to_string(r.partition) +
           ",\"offset\":" + std::to_string(r.offset) +
           ",\"timestamp\":" + std::to_string(r.timestamp_ms) + ",\"key\":";
    json_string(out, r.key);
    out += ",\"value\":";
    json_string(out, r.value);
    out += ",\"headers\":[";
    for (size_t i = 0; i < r.headers.size(); ++i) {
      out += i ? ",{\"key\":" : "{\"key\":";
      json_string(out, r.headers[i].key);
      out += ",\"value\":";
      json_string(out, r.headers[i].value);
      out += "}";
    }
    out += "]}\n";
    return out;
  }
  const std::string& f = o.format;
  for (size_t i = 0; i < f.size(); ++i) {
    if (f[i] == '\\' && i + 1 < f.size()) {
      char c = f[++i];
      out += c == 'n' ? '\n' : c == 't' ? '\t' : c;
      continue;
    }
    if (f[i] != '%' || i + 1 == f.size()) {
      out += f[i];
      continue;
    }
    switch (f[++i]) {
      case 'k':
        out += r.key.value_or("");
        break;
      case 'v':
        out += r.value.value_or("");
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
          out += (h ? "," : "") + r.headers[h].key + "=" + r.headers[h].value.value_or("");
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

void consume(Context& ctx, const ConsumeOptions& o) {
  if (!o.group.empty() && !o.partitions.empty()) {
    return usage_error(ctx, "consume: use --group or --partition, not both");
  }
  int64_t from_offset = -1;
  int64_t from_timestamp = -1;
  const std::string& mode = o.from.at(0);
  if ((mode == "offset" || mode == "timestamp") && o.from.size() != 2) {
    return usage_error(ctx,
                       "consume: --from " + mode + " needs a number, e.g. --from " + mode + " 42");
  }
  try {
    if (mode == "offset") from_offset = std::stoll(o.from[1]);
    if (mode == "timestamp") from_timestamp = std::stoll(o.from[1]);
  } catch (const std::exception&) {
    return usage_error(ctx, "consume: --from " + mode + " needs a number, got '" + o.from[1] + "'");
  }
  if (mode != "beginning" && mode != "end" && mode != "offset" && mode != "timestamp") {
    return usage_error(ctx, "consume: --from is beginning, end, offset N or timestamp MS");
  }
  ConsumerConfig config;
  config.bootstrap_servers = ctx.brokers;
  config.client_id = "sluice-cli";
  config.group_id = o.group;
  config.auto_offset_reset = mode == "end" ? "latest" : "earliest";
  config.enable_auto_commit = false;  // commits follow what was printed, below
  auto consumer = Consumer::create(config);
  if (!consumer) return fail(ctx, "consume", consumer.error());
  Consumer& c = **consumer;
  auto n = c.partition_count(o.topic);
  if (!n) {
    return fail(
        ctx, "consume",
        Error{n.error().code, n.error().message + " (list topics with `sluice topic list`)"});
  }
  if (!o.group.empty()) {
    if (auto s = c.subscribe({o.topic}); !s) return fail(ctx, "consume", s.error());
  } else {
    std::vector<TopicPartition> tps;
    if (o.partitions.empty()) {
      for (int32_t p = 0; p < *n; ++p) tps.push_back({o.topic, p});
    } else {
      for (int32_t p : o.partitions) tps.push_back({o.topic, p});
    }
    if (auto s = c.assign(tps); !s) return fail(ctx, "consume", s.error());
    Status s;
    if (mode == "beginning") s = c.seek_to_beginning(tps);
    if (mode == "end") s = c.seek_to_end(tps);
    if (mode == "timestamp") s = c.seek_to_timestamp(tps, from_timestamp);
    if (mode == "offset") {
      for (const auto& tp : tps) {
        if (s) s = c.seek(tp, from_offset);
      }
    }
    if (!s) return fail(ctx, "consume", s.error());
  }
  int64_t seen = 0;
  std::map<TopicPartition, int64_t> unprinted;  // first record returned but not printed
  auto last_commit = Clock::now();
  Progress progress("consumed");
  auto last_record = Clock::now();
  std::string out;
  while (!g_interrupted && (o.count < 0 || seen < o.count)) {
    auto records = c.poll(std::chrono::milliseconds(200));
    if (!records) return fail(ctx, "consume", records.error());
    if (records->empty()) {
      if (o.idle_timeout_ms >= 0 &&
          Clock::now() - last_record > std::chrono::milliseconds(o.idle_timeout_ms))
        break;
      continue;
    }
    last_record = Clock::now();
    out.clear();
    for (const auto& r : *records) {
      if (o.count >= 0 && seen >= o.count) {  // handed out but not printed: not consumed
        unprinted.try_emplace({r.topic, r.partition}, r.offset);
        continue;
      }
      out += render(r, o);
      ++seen;
    }
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::fflush(stdout);
    progress.tick(seen);
    if (!o.group.empty() && Clock::now() - last_commit > std::chrono::seconds(5)) {
      c.commit_async();  // errors surface in the final commit
      last_commit = Clock::now();
    }
  }
  if (!o.group.empty()) {
    // Exactly what was printed (a --count may stop in the middle of a poll).
    std::map<TopicPartition, int64_t> offsets;
    for (const auto& tp : c.assignment()) {
      auto u = unprinted.find(tp);
      auto p = c.position(tp);
      if (u != unprinted.end()) {
        offsets[tp] = u->second;
      } else if (p) {
        offsets[tp] = *p;
      }
    }
    if (auto s = c.commit_sync(offsets); !s) return fail(ctx, "consume: commit", s.error());
  }
  c.close();
}

}  // namespace

void register_produce(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<ProduceOptions>();
  auto* cmd =
      app.add_subcommand("produce", "Send records read from stdin (one per line) or a file");
  cmd->add_option("topic", o->topic, "Topic")->required();
  cmd->add_option("-f,--file", o->file, "Read records from this file instead of stdin");
  cmd->add_option("-K,--key-separator", o->key_separator,
                  "Split each line into key and value at the first SEP");
  cmd->add_option("-H,--header", o->headers, "Header key=value on every record (repeatable)");
  cmd->add_option("-p,--partition", o->partition,
                  "Send to this partition (default: by key, or sticky)");
  cmd->add_option("-a,--acks", o->acks, "0, 1 or all")->capture_default_str();
  cmd->add_option("-z,--compression", o->compression, "none, gzip, snappy, lz4, zstd")
      ->capture_default_str();
  cmd->add_option("--linger-ms", o->linger_ms, "Batching delay")->capture_default_str();
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
                  "beginning | end | offset N | timestamp MS (default beginning; with --group only "
                  "when the group has no committed offset)")
      ->expected(1, 2);
  cmd->add_option("-c,--count", o->count, "Stop after this many records");
  cmd->add_option(
         "--format", o->format,
         "Output per record: %k key, %v value, %o offset, %p partition, %t timestamp, %h headers, "
         "%T topic, \\n \\t; a newline follows")
      ->capture_default_str();
  cmd->add_flag("--json", o->json, "One JSON object per record");
  cmd->add_option("--idle-timeout-ms", o->idle_timeout_ms,
                  "Exit after this long without records (default: wait)");
  cmd->callback([&ctx, o] {
    std::signal(SIGINT, on_signal);
    consume(ctx, *o);
  });
}

}  // namespace sluice::cli
