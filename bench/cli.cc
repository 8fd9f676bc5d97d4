#include "bench/cli.h"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>

#include "bench/baseline.h"
#include "bench/bench.h"
#include "consumer/consumer.h"
#include "producer/producer.h"

namespace sluice::bench {
namespace {

// Settings as the command line gives them, before they become Options.
struct Flags {
  Options options;
  int32_t record_size = 0;  // 0: use --record-size-min/max
  std::string acks = "all";
  std::string key_distribution = "none";
  std::string client = "library";
  bool json = false;
  bool quiet = false;
  bool bootstrap_given = false;
  std::string report;
  std::vector<std::string> properties;  // -X key=value
};

using Finish = std::function<void(int)>;

int fail(const std::string& why) {
  std::fprintf(stderr, "%s\n", why.c_str());
  return 1;
}

bool write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  return static_cast<bool>(out);
}

int run_command(Flags& f, Mode mode, const std::string* default_bootstrap,
                const std::map<std::string, std::string>* default_properties) {
  Options o = f.options;
  if (default_bootstrap && !f.bootstrap_given) o.bootstrap = *default_bootstrap;
  if (default_properties) o.properties = *default_properties;
  for (const auto& kv : f.properties) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      throw CLI::ValidationError("-X", "wants key=value, got '" + kv + "'");
    }
    const std::string key = kv.substr(0, eq), value = kv.substr(eq + 1);
    ProducerConfig producer;
    ConsumerConfig consumer;
    auto p = set_config(producer, key, value);
    auto c = set_config(consumer, key, value);
    if (!p && !c) {
      const bool p_unknown = p.error().message.rfind("unknown config", 0) == 0;
      throw CLI::ValidationError("-X", (p_unknown ? c : p).error().message);
    }
    o.properties[key] = value;
  }
  o.mode = mode;
  if (f.record_size > 0) o.record_bytes_min = o.record_bytes_max = f.record_size;
  if (o.record_bytes_max < o.record_bytes_min) o.record_bytes_max = o.record_bytes_min;
  o.acks = f.acks == "all" || f.acks == "-1" ? int16_t{-1}
           : f.acks == "0"                   ? int16_t{0}
                                             : int16_t{1};
  if (f.acks != "all" && f.acks != "-1" && f.acks != "0" && f.acks != "1") {
    throw CLI::ValidationError("--acks", "must be 0, 1 or all");
  }
  static const std::map<std::string, KeyDistribution> kKeys = {
      {"none", KeyDistribution::kNone},
      {"random", KeyDistribution::kRandom},
      {"sequential", KeyDistribution::kSequential}};
  o.key_distribution = kKeys.at(f.key_distribution);
  o.client = f.client == "raw" ? ClientKind::kRaw : ClientKind::kLibrary;
  o.progress = !f.quiet;
  if (auto v = validate(o); !v) throw CLI::ValidationError(v.error().message);
  auto result = run(o);
  if (!result) return fail("sluice bench " + mode_name(mode) + ": " + result.error().message);
  std::fputs((f.json ? to_json(*result) : summary_table(*result)).c_str(), stdout);
  std::fflush(stdout);
  if (!f.report.empty() && !write_file(f.report, to_html(*result))) {
    return fail("sluice bench: cannot write " + f.report);
  }
  if (result->produce.errors > 0) return fail("sluice bench: some records were not acknowledged");
  if (!result->complete) return fail("sluice bench: some acknowledged records were not consumed");
  return 0;
}

void add_run_command(CLI::App& parent, Mode mode, const std::string& about, Finish finish,
                     const std::string* default_bootstrap,
                     const std::map<std::string, std::string>* default_properties) {
  auto flags = std::make_shared<Flags>();
  Options& o = flags->options;
  CLI::App* c = parent.add_subcommand(mode_name(mode), about);
  CLI::Option* bootstrap =
      c->add_option("--bootstrap", o.bootstrap, "broker host:port")->capture_default_str();
  c->add_option("--topic", o.topic, "topic (created when missing)")->capture_default_str();
  c->add_option("--partitions", o.partitions, "partitions if the topic is created")
      ->capture_default_str();
  c->add_option("--record-size", flags->record_size, "record value bytes (fixed)");
  c->add_option("--record-size-min", o.record_bytes_min, "smallest value bytes (uniform)")
      ->capture_default_str();
  c->add_option("--record-size-max", o.record_bytes_max, "largest value bytes (uniform)")
      ->capture_default_str();
  c->add_option("--key-distribution", flags->key_distribution, "none|random|sequential")
      ->check(CLI::IsMember({"none", "random", "sequential"}))
      ->capture_default_str();
  c->add_option("--keys", o.keys, "distinct keys")->capture_default_str();
  c->add_option("--producers", o.producers, "producer threads (one connection each)")
      ->capture_default_str();
  c->add_option("--consumers", o.consumers, "consumer threads (partitions split among them)")
      ->capture_default_str();
  c->add_option("--rate", o.rate_per_s, "records/s over all producers, 0 = max")
      ->capture_default_str();
  c->add_option("--duration", o.duration_s, "measured seconds")->capture_default_str();
  c->add_option("--records", o.records, "measured records instead of a duration");
  c->add_option("--warmup", o.warmup_s, "seconds run first and discarded")->capture_default_str();
  c->add_option("--acks", flags->acks, "0, 1 or all")->capture_default_str();
  c->add_option("--compression", o.compression, "none|gzip|snappy|lz4|zstd")->capture_default_str();
  c->add_option("--batch-size", o.batch_bytes, "batch bytes per partition")->capture_default_str();
  c->add_option("--linger-ms", o.linger_ms, "wait this long to fill a batch")
      ->capture_default_str();
  c->add_option("--drain-timeout", o.drain_timeout_s, "e2e: seconds to wait for stragglers")
      ->capture_default_str();
  c->add_option("--client", flags->client,
                "library (sluice::Producer/Consumer) or raw (the bench's own codec client)")
      ->check(CLI::IsMember({"library", "raw"}))
      ->capture_default_str();
  c->add_option("--seed", o.seed, "random seed")->capture_default_str();
  c->add_flag("--json", flags->json, "print the result as JSON");
  c->add_flag("--quiet", flags->quiet, "no progress line");
  c->add_option("--report", flags->report, "write a self-contained HTML report to this file");
  c->add_option("-X", flags->properties,
                "client setting by its Kafka name, e.g. -X security.protocol=SSL (repeatable)");
  c->callback([flags, mode, finish, default_bootstrap, default_properties, bootstrap] {
    flags->bootstrap_given = bootstrap->count() > 0;
    finish(run_command(*flags, mode, default_bootstrap, default_properties));
  });
}

void print_baseline(const char* what, const BaselineResult& r, bool json) {
  if (json) {
    std::printf(
        "{\"baseline\":\"%s\",\"bytes\":%lld,\"seconds\":%.6f,\"syncs\":%lld,"
        "\"mb_per_s\":%.3f}\n",
        what, static_cast<long long>(r.bytes), r.seconds, static_cast<long long>(r.syncs),
        r.mb_per_s());
  } else {
    std::printf("%s: %lld bytes in %.3f s (%lld fdatasync): %.1f MB/s\n", what,
                static_cast<long long>(r.bytes), r.seconds, static_cast<long long>(r.syncs),
                r.mb_per_s());
  }
}

void add_baseline_commands(CLI::App& parent, Finish finish) {
  CLI::App* b = parent.add_subcommand("baseline", "physical ceilings: disk and loopback TCP");
  b->require_subcommand(1);
  auto disk = std::make_shared<DiskBaselineOptions>();
  auto tcp = std::make_shared<TcpBaselineOptions>();
  auto json = std::make_shared<bool>(false);
  CLI::App* d = b->add_subcommand("disk", "sequential write + fdatasync to a file");
  d->add_option("--dir", disk->dir, "directory for the file")->required();
  d->add_option("--bytes", disk->bytes, "bytes to write")->capture_default_str();
  d->add_option("--write-size", disk->write_bytes, "bytes per write()")->capture_default_str();
  d->add_option("--sync-bytes", disk->sync_bytes, "fdatasync every N bytes (0: at the end)")
      ->capture_default_str();
  d->add_flag("--json", *json);
  d->callback([disk, json, finish] {
    auto r = disk_baseline(*disk);
    if (!r) return finish(fail("sluice bench baseline disk: " + r.error().message));
    print_baseline("disk", *r, *json);
    finish(0);
  });
  CLI::App* t = b->add_subcommand("tcp", "one loopback TCP connection");
  t->add_option("--bytes", tcp->bytes, "bytes to send")->capture_default_str();
  t->add_option("--write-size", tcp->write_bytes, "bytes per send()")->capture_default_str();
  t->add_flag("--json", *json);
  t->callback([tcp, json, finish] {
    auto r = tcp_baseline(*tcp);
    if (!r) return finish(fail("sluice bench baseline tcp: " + r.error().message));
    print_baseline("tcp", *r, *json);
    finish(0);
  });
}

}  // namespace

void add_bench_commands(CLI::App& app, std::function<void(int)> finish,
                        const std::string* default_bootstrap,
                        const std::map<std::string, std::string>* default_properties) {
  app.require_subcommand(1);
  add_run_command(app, Mode::kProduce, "produce at a rate (or flat out), measure acks", finish,
                  default_bootstrap, default_properties);
  add_run_command(app, Mode::kConsume, "consume a topic from the start to its end", finish,
                  default_bootstrap, default_properties);
  add_run_command(app, Mode::kE2e, "produce and consume, measure send-to-receive latency", finish,
                  default_bootstrap, default_properties);
  add_baseline_commands(app, finish);
}

}  // namespace sluice::bench
