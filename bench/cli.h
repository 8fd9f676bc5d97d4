// The `sluice bench` commands on a CLI11 app. The `sluice` CLI calls register_bench(app) to
// get `sluice bench produce|consume|e2e|baseline`; the standalone `sluice-bench` program puts
// the same subcommands at its top level with add_bench_commands(app).
//
// A command's exit status travels as CLI::RuntimeError(status) from its callback (CLI11's
// convention: `catch (const CLI::ParseError& e) { return app.exit(e); }`): 0 success,
// 1 the run failed (broker unreachable, produce errors, an e2e run that lost records; the
// reason is on stderr); bad settings are CLI11 parse errors with CLI11's statuses.
#pragma once

namespace CLI {
class App;
}

namespace sluice::bench {

void register_bench(CLI::App& app);
void add_bench_commands(CLI::App& app);

}  // namespace sluice::bench
