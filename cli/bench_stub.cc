#include <iostream>

#include "cli/cli.h"

namespace sluice::cli {

__attribute__((weak)) void register_bench(CLI::App& app, Context& ctx) {
  auto* bench = app.add_subcommand("bench", "Load generator (not built into this binary)");
  bench->allow_extras();
  bench->callback([&ctx] {
    std::cerr << "sluice: bench is not built into this binary (build the bench/ component)\n";
    ctx.exit_code = kExitFailure;
  });
}

}  // namespace sluice::cli
