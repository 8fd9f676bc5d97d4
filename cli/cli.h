// The `sluice` command: shared pieces of the subcommands. Built only on the client libraries
// (client/, producer/, consumer/). Exit status: 0 success, 1 runtime failure (broker
// unreachable, unknown topic, ...), 2 usage error.
#pragma once

#include <CLI/CLI.hpp>
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
  // A client for admin requests, connected on first use.
  client::Client& admin();
  std::unique_ptr<client::Client> admin_client;
};

// Prints "sluice: <what>: <error>" (plus a hint when one helps) and sets exit code 1.
void fail(Context& ctx, const std::string& what, const Error& e);
// Prints "sluice: <message>" and sets exit code 2.
void usage_error(Context& ctx, const std::string& message);
// True when stderr is a terminal (progress lines go there only then).
bool stderr_is_tty();

void register_topic(CLI::App& app, Context& ctx);
void register_produce(CLI::App& app, Context& ctx);
void register_consume(CLI::App& app, Context& ctx);
void register_group(CLI::App& app, Context& ctx);
void register_cluster(CLI::App& app, Context& ctx);
// `sluice cluster health` (cli/health.cc), under the `cluster` subcommand.
void register_cluster_health(CLI::App& cluster, Context& ctx);
// `sluice cluster decommission | recommission | balance` (cli/balance.cc).
void register_cluster_moves(CLI::App& cluster, Context& ctx);
// topic move, topic elect, cluster moves (cli/moves.cc): after register_topic/register_cluster.
void register_moves(CLI::App& app, Context& ctx);

// The `sluice bench` subcommand. cli/bench_stub.cc defines it weakly as a stub that says the
// load generator is not built; bench/ provides the real one by compiling its definition into
// the `sluice` target (target_sources or an OBJECT library, so the strong symbol wins).
void register_bench(CLI::App& app, Context& ctx);

}  // namespace sluice::cli
