// sluice top: a live terminal view of one broker's per-topic produce and fetch rates and its
// consumer groups' lag, from the admin API's /v1/stats (cumulative counters with the time they
// were read; a rate is the difference of two reads over their times). Refreshes every
// --interval seconds until interrupted; --once prints one view (two reads an interval apart)
// and exits, for scripts and tests. Exit status 1 when the admin API cannot be read.
#include <boost/property_tree/json_parser.hpp>
#include <boost/property_tree/ptree.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>
#include <cstdarg>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/http.h"

namespace sluice::cli {
namespace {

namespace pt = boost::property_tree;

struct TopOptions {
  std::string admin = "127.0.0.1:9644";
  double interval_s = 2.0;
  bool once = false;
  bool internal = false;  // show __consumer_offsets and other internal topics
  int timeout_ms = 5000;
};

struct TopicCounters {
  uint64_t bytes_in = 0, records_in = 0, bytes_out = 0, records_out = 0;
  int64_t partitions = 0;
  uint64_t size_bytes = 0;
};

struct GroupRow {
  std::string state;
  int64_t members = 0;
  int64_t lag = 0;
};

struct Stats {
  int32_t node_id = -1;
  int64_t time_ms = 0;
  std::map<std::string, TopicCounters> topics;
  std::map<std::string, GroupRow> groups;
};

// Boost.PropertyTree's JSON reader (part of Boost, a dependency already) turns the document into
// a tree of strings; a malformed or unexpected document is an error, never a crash.
Result<Stats> read_stats(const std::string& host, const std::string& port,
                         std::chrono::milliseconds timeout) {
  auto reply = http_request(http::verb::get, host, port, "/v1/stats", timeout);
  if (!reply) return unexpected(reply.error());
  if (reply->status != 200) {
    return error(1, "/v1/stats answered HTTP " + std::to_string(reply->status) + ": " +
                        reply->body.substr(0, 200));
  }
  try {
    pt::ptree doc;
    std::istringstream in(reply->body);
    pt::read_json(in, doc);
    Stats s;
    s.node_id = doc.get<int32_t>("node_id");
    s.time_ms = doc.get<int64_t>("time_ms");
    for (const auto& [_, t] : doc.get_child("topics")) {
      TopicCounters& c = s.topics[t.get<std::string>("name")];
      c.bytes_in = t.get<uint64_t>("bytes_in");
      c.records_in = t.get<uint64_t>("records_in");
      c.bytes_out = t.get<uint64_t>("bytes_out");
      c.records_out = t.get<uint64_t>("records_out");
      c.partitions = t.get<int64_t>("local_partitions");
      c.size_bytes = t.get<uint64_t>("local_size_bytes");
    }
    for (const auto& [_, g] : doc.get_child("groups")) {
      s.groups[g.get<std::string>("group")] = {g.get<std::string>("state"),
                                               g.get<int64_t>("members"), g.get<int64_t>("lag")};
    }
    return s;
  } catch (const std::exception& e) {
    return error(1, std::string("/v1/stats is not the document expected: ") + e.what());
  }
}

// printf into a std::string (the CLI links the client libraries only, not fmt).
[[gnu::format(printf, 1, 2)]] std::string strf(const char* format, ...) {
  char buf[512];
  va_list args;
  va_start(args, format);
  const int n = std::vsnprintf(buf, sizeof buf, format, args);
  va_end(args);
  return n < 0 ? std::string() : std::string(buf, std::min<size_t>(size_t(n), sizeof buf - 1));
}

std::string human_bytes(double n) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  size_t u = 0;
  while (n >= 1024 && u + 1 < std::size(kUnits)) {
    n /= 1024;
    ++u;
  }
  return u == 0 ? strf("%.0f %s", n, kUnits[u]) : strf("%.1f %s", n, kUnits[u]);
}

// Names are printed as sent, with control characters replaced, so a topic or group name
// cannot move the cursor or clear the terminal.
std::string printable(const std::string& s) {
  std::string out;
  for (char c : s) out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
  return out;
}

void print_view(const TopOptions& o, const Stats& before, const Stats& now) {
  const double dt = std::max<int64_t>(1, now.time_ms - before.time_ms) / 1000.0;
  const std::time_t t = now.time_ms / 1000;
  std::tm tm{};
  localtime_r(&t, &tm);
  char when[32];
  std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
  std::cout << strf("sluice top: broker %d at %s, rates over %.1f s, %s\n\n", now.node_id,
                    o.admin.c_str(), dt, when);
  std::cout << strf("%-32s %12s %12s %12s %12s %5s %10s\n", "TOPIC", "PRODUCE/s", "PRODUCE B/s",
                    "FETCH/s", "FETCH B/s", "PARTS", "SIZE");
  size_t shown = 0;
  for (const auto& [name, c] : now.topics) {
    if (!o.internal && name.starts_with("__")) continue;
    auto it = before.topics.find(name);
    const TopicCounters b = it == before.topics.end() ? c : it->second;
    auto rate = [dt](uint64_t a, uint64_t z) { return z >= a ? (z - a) / dt : 0.0; };
    std::cout << strf("%-32s %12.1f %12s %12.1f %12s %5lld %10s\n", printable(name).c_str(),
                      rate(b.records_in, c.records_in),
                      human_bytes(rate(b.bytes_in, c.bytes_in)).c_str(),
                      rate(b.records_out, c.records_out),
                      human_bytes(rate(b.bytes_out, c.bytes_out)).c_str(),
                      static_cast<long long>(c.partitions),
                      human_bytes(static_cast<double>(c.size_bytes)).c_str());
    ++shown;
  }
  if (shown == 0) std::cout << "(no topics)\n";
  std::cout << strf("\n%-32s %-20s %8s %12s\n", "GROUP", "STATE", "MEMBERS", "LAG");
  for (const auto& [name, g] : now.groups) {
    std::cout << strf("%-32s %-20s %8lld %12lld\n", printable(name).c_str(),
                      printable(g.state).c_str(), static_cast<long long>(g.members),
                      static_cast<long long>(g.lag));
  }
  if (now.groups.empty()) std::cout << "(no consumer groups coordinated by this broker)\n";
  std::cout.flush();
}

volatile std::sig_atomic_t interrupted = 0;

void top(Context& ctx, const TopOptions& o) {
  auto address = split_admin_address(o.admin);
  if (!address) return usage_error(ctx, address.error().message);
  const auto timeout = std::chrono::milliseconds(o.timeout_ms);
  auto read = [&]() -> std::optional<Stats> {
    auto s = read_stats(address->first, address->second, timeout);
    if (!s) {
      std::cerr << "sluice: top: admin API at " << o.admin << ": " << s.error().message << "\n"
                << "hint: is sluiced running with --admin.listen " << o.admin
                << "? Set --admin or SLUICE_ADMIN.\n";
      ctx.exit_code = kExitFailure;
      return std::nullopt;
    }
    return std::move(*s);
  };
  auto before = read();
  if (!before) return;
  const bool clear = !o.once && isatty(STDOUT_FILENO);
  std::signal(SIGINT, [](int) { interrupted = 1; });
  const auto step = std::chrono::milliseconds(static_cast<int64_t>(o.interval_s * 1000));
  while (!interrupted) {
    // Sleep in small steps so Ctrl-C ends the view at once.
    for (auto slept = std::chrono::milliseconds(0); slept < step && !interrupted;
         slept += std::chrono::milliseconds(50)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (interrupted) break;
    auto now = read();
    if (!now) return;
    if (clear) std::cout << "\x1b[H\x1b[2J";
    print_view(o, *before, *now);
    if (o.once) return;
    if (!clear) std::cout << "\n";
    before = std::move(now);
  }
}

}  // namespace

void register_top(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<TopOptions>();
  auto* cmd = app.add_subcommand(
      "top",
      "Live view of a broker's per-topic produce and fetch rates and consumer-group lag, from "
      "its admin HTTP API (refreshes until Ctrl-C; --once prints one view)");
  cmd->add_option("--admin", o->admin, "The broker's admin API address (host:port)")
      ->envname("SLUICE_ADMIN")
      ->capture_default_str();
  cmd->add_option("-n,--interval", o->interval_s, "Seconds between refreshes (and of a rate)")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  cmd->add_flag("--once", o->once, "Print one view (rates over one interval) and exit");
  cmd->add_flag("--internal", o->internal, "Show internal topics (__consumer_offsets) too");
  cmd->add_option("--timeout-ms", o->timeout_ms, "Give up on a read after this long")
      ->capture_default_str()
      ->check(CLI::Range(1, 600000));
  cmd->callback([&ctx, o] { top(ctx, *o); });
}

}  // namespace sluice::cli
