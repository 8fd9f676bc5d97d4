// The strong definition of sluice::cli::register_bench (cli/cli.h), compiled into the `sluice`
// program by bench/CMakeLists.txt so it replaces the weak stub: `sluice bench ...`.
// -b/--brokers of `sluice` is the default for --bootstrap; its -X and --command-config
// settings apply to the benchmark's clients.
#include "bench/cli.h"
#include "cli/cli.h"

namespace sluice::cli {

void register_bench(CLI::App& app, Context& ctx) {
  CLI::App* bench = app.add_subcommand("bench", "throughput and latency benchmarks");
  bench::add_bench_commands(
      *bench, [&ctx](int status) { ctx.exit_code = status; }, &ctx.brokers, &ctx.properties);
}

}  // namespace sluice::cli
