// The `sluice` command: shared pieces of the subcommands. Built only on the client libraries
// (client/, producer/, consumer/). Exit status: 0 success, 1 runtime failure (broker
// unreachable, unknown topic, ...), 2 usage error.
#pragma once

#include <CLI/CLI.hpp>
#include <map>
#include <memory>
#include <string>

#include "client/client.h"
#include "common/result.h"

namespace sluice::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

// Global options and the exit status the subcommand callbacks set.
struct Context {
  std::string brokers = "127.0.0.1:9092";  // -b/--brokers, env SLUICE_BROKERS
  int exit_code = kExitOk;
  bool verbose = false;  // -v: say what was done on success (stderr)
  // Client settings by their Kafka names for every connection (--command-config FILE, then
  // the global -X key=value): TLS and SASL above all; each is known to the producer or the
  // consumer (checked while parsing).
  std::map<std::string, std::string> properties;
  // A client for admin requests, connected on first use.
  client::Client& admin();
  std::unique_ptr<client::Client> admin_client;
};

// Applies ctx.properties to a producer or consumer config (set_config), leaving out the ones
// this kind of config does not know (a consumer's group.id in a file used for produce too).
template <class Config>
Status apply_properties(const Context& ctx, Config& config) {
  for (const auto& [k, v] : ctx.properties) {
    auto s = set_config(config, k, v);
    if (!s && s.error().message.rfind("unknown config", 0) != 0) return s;
  }
  return {};
}

// Prints "sluice: <what>: <error>" (plus a hint when one helps) and sets exit code 1.
void fail(Context& ctx, const std::string& what, const Error& e);
// Prints "sluice: <message>" and sets exit code 2.
void usage_error(Context& ctx, const std::string& message);
// Prints a parse error once, a did-you-mean for a mistyped subcommand and one --help pointer.
void report_usage_error(CLI::App& app, int argc, char** argv, const CLI::ParseError& e);
// True when stderr is a terminal (progress lines go there only then).
bool stderr_is_tty();

// --format text|json on the admin commands (JSON parseable by `python3 -m json.tool`).
void add_format_option(CLI::App& cmd, std::string& format);

void register_topic(CLI::App& app, Context& ctx);
void register_produce(CLI::App& app, Context& ctx);
void register_consume(CLI::App& app, Context& ctx);
void register_group(CLI::App& app, Context& ctx);
void register_cluster(CLI::App& app, Context& ctx);
// `sluice acl create | list | delete` (cli/acl.cc).
void register_acl(CLI::App& app, Context& ctx);
// `sluice transaction list | describe | producers` (cli/transaction.cc).
void register_transaction(CLI::App& app, Context& ctx);
// `sluice user create | list | delete` (cli/user.cc).
void register_user(CLI::App& app, Context& ctx);
// sluice quota (cli/quota.cc).
void register_quota(CLI::App& app, Context& ctx);
// `sluice cluster health` (cli/health.cc), under the `cluster` subcommand.
void register_cluster_health(CLI::App& cluster, Context& ctx);
// `sluice top` (cli/top.cc): live rates and group lag from the admin API.
void register_top(CLI::App& app, Context& ctx);
// `sluice cluster decommission | recommission | balance` (cli/balance.cc).
void register_cluster_moves(CLI::App& cluster, Context& ctx);
// topic move, topic elect, cluster moves (cli/moves.cc): after register_topic/register_cluster.
void register_moves(CLI::App& app, Context& ctx);
// `sluice completion bash` (cli/completion.cc): register after every other subcommand.
void register_completion(CLI::App& app, Context& ctx);

// The `sluice bench` subcommand. cli/bench_stub.cc defines it weakly as a stub that says the
// load generator is not built; bench/ provides the real one by compiling its definition into
// the `sluice` target (target_sources or an OBJECT library, so the strong symbol wins).
void register_bench(CLI::App& app, Context& ctx);

}  // namespace sluice::cli
