// The `sluice bench` commands on a CLI11 app: produce, consume, e2e and baseline disk|tcp.
// The `sluice` program gets them under `sluice bench` through cli_hook.cc (the strong
// sluice::cli::register_bench); the standalone `sluice-bench` program (main.cc) puts them at
// its top level.
//
// Exit status: each command hands its status to `finish` (0 success; 1 the run failed:
// broker unreachable, produce errors, an e2e run that lost records, with the reason on
// stderr). Bad settings throw CLI::ValidationError from the callback, a usage error.
#pragma once

#include <functional>
#include <map>
#include <string>

namespace CLI {
class App;
}

namespace sluice::bench {

// `default_bootstrap`, when given, is read when a command runs and used unless --bootstrap is;
// `default_properties` (client settings by Kafka name), when given, is read then too and the
// command's -X settings go on top.
void add_bench_commands(CLI::App& app, std::function<void(int status)> finish,
                        const std::string* default_bootstrap = nullptr,
                        const std::map<std::string, std::string>* default_properties = nullptr);

}  // namespace sluice::bench
