// sluice-bench: the `sluice bench` commands as a program of their own (the same code the
// `sluice` CLI registers with register_bench()).
#include <CLI/CLI.hpp>

#include "bench/cli.h"

int main(int argc, char** argv) {
  CLI::App app("sluice-bench: throughput and latency of a Sluice (or any Kafka) broker");
  int status = 0;
  sluice::bench::add_bench_commands(app, [&status](int s) { status = s; });
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return status;
}
