// sluice: the command-line tool. See docs/clients.md and `sluice --help`.
#include <unistd.h>

#include <cstdlib>
#include <iostream>

#include "cli/cli.h"

namespace sluice::cli {

client::Client& Context::admin() {
  if (!admin_client) {
    client::ClientConfig cc;
    cc.bootstrap_servers = client::parse_broker_list(brokers);
    cc.client_id = "sluice-cli";
    cc.retries = 2;
    cc.request_timeout_ms = 15000;
    admin_client = std::make_unique<client::Client>(cc);
  }
  return *admin_client;
}

void fail(Context& ctx, const std::string& what, const Error& e) {
  std::cerr << "sluice: " << what << ": " << e.message << "\n";
  if (e.code == static_cast<int>(client::Errc::kNetwork) ||
      e.code == static_cast<int>(client::Errc::kTimeout)) {
    std::cerr << "hint: is a broker listening at " << ctx.brokers
              << "? Set -b/--brokers or SLUICE_BROKERS.\n";
  }
  ctx.exit_code = kExitFailure;
}

void usage_error(Context& ctx, const std::string& message) {
  std::cerr << "sluice: " << message << "\n";
  ctx.exit_code = kExitUsage;
}

bool stderr_is_tty() { return isatty(STDERR_FILENO) == 1; }

}  // namespace sluice::cli

int main(int argc, char** argv) {
  using namespace sluice::cli;
  Context ctx;
  CLI::App app{"sluice: topics, records and consumer groups of a Kafka-compatible cluster"};
  app.require_subcommand(1);
  app.fallthrough();  // -b/--brokers also after the subcommand
  app.set_help_all_flag("--help-all", "Help for every subcommand");
  app.add_option("-b,--brokers", ctx.brokers, "Bootstrap brokers host:port[,host:port...]")
      ->envname("SLUICE_BROKERS")
      ->capture_default_str();
  register_topic(app, ctx);
  register_produce(app, ctx);
  register_consume(app, ctx);
  register_group(app, ctx);
  register_cluster(app, ctx);
  register_moves(app, ctx);
  register_bench(app, ctx);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    std::cerr << "Run with --help for usage.\n";
    return kExitUsage;
  }
  ctx.admin_client.reset();
  return ctx.exit_code;
}
