// sluice: the command-line tool. See docs/clients.md and `sluice --help`.
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iostream>

#include "cli/cli.h"
#include "consumer/consumer.h"
#include "producer/producer.h"

namespace sluice::cli {

client::Client& Context::admin() {
  if (!admin_client) {
    client::ClientConfig cc;
    cc.bootstrap_servers = client::parse_broker_list(brokers);
    cc.client_id = "sluice-cli";
    cc.retries = 2;
    cc.request_timeout_ms = 15000;
    for (const auto& [k, v] : properties) client::set_security_config(cc.security, k, v);
    admin_client = std::make_unique<client::Client>(cc);
  }
  return *admin_client;
}

void fail(Context& ctx, const std::string& what, const Error& e) {
  std::cerr << "sluice: " << what << ": " << e.message << "\n";
  // (Not when the message already points at a security setting: the broker was there.)
  if ((e.code == static_cast<int>(client::Errc::kNetwork) ||
       e.code == static_cast<int>(client::Errc::kTimeout)) &&
      e.message.find("security.protocol") == std::string::npos) {
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

namespace {

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// The deepest subcommand named on the command line (the one whose usage applies).
CLI::App* deepest_subcommand(CLI::App& app, int argc, char** argv) {
  CLI::App* at = &app;
  for (int i = 1; i < argc; ++i) {
    try {
      at = at->get_subcommand(argv[i]);
    } catch (const CLI::OptionNotFound&) {
      continue;
    }
  }
  return at;
}

// The closest long option of `at` or its parents (options fall through to them) to `arg`
// ("--partiton" or "--partiton=3"), if `arg` is no option of theirs and one is close enough;
// else empty.
std::string closest_option(const CLI::App* at, const std::string& arg) {
  if (arg.size() < 4 || arg.compare(0, 2, "--") != 0) return "";
  const std::string name =
      arg.substr(2, arg.find('=') == std::string::npos ? std::string::npos : arg.find('=') - 2);
  std::string best;
  size_t best_d = 3;
  for (const CLI::App* a = at; a != nullptr; a = a->get_parent()) {
    for (const CLI::Option* opt : a->get_options()) {
      for (const auto& l : opt->get_lnames()) {
        if (l == name) return "";  // a known option
        size_t d = edit_distance(name, l);
        if (d < best_d && d * 3 <= l.size()) {
          best_d = d;
          best = "--" + l;
        }
      }
    }
  }
  return best;
}

// One client setting for ctx.properties: known to the producer or the consumer with a value
// it takes, else a usage error (exit 2) naming it.
void add_property(Context& ctx, const std::string& key, const std::string& value,
                  const std::string& where) {
  ProducerConfig producer;
  ConsumerConfig consumer;
  auto p = set_config(producer, key, value);
  auto c = p ? p : set_config(consumer, key, value);
  if (!c) {
    const Error& e = !p && p.error().message.rfind("unknown config", 0) != 0 ? p.error() : c.error();
    throw CLI::ValidationError(where, e.message);
  }
  ctx.properties[key] = value;
}

// A Java properties file as Kafka's tools take with --command-config: key=value (or
// key: value) lines, blank lines and # or ! comments.
void load_command_config(Context& ctx, const std::string& path) {
  std::ifstream in(path);
  if (!in) throw CLI::ValidationError("--command-config", "cannot read " + path);
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    auto trim = [](std::string t) {
      t.erase(0, t.find_first_not_of(" \t\r"));
      t.erase(t.find_last_not_of(" \t\r") + 1);
      return t;
    };
    line = trim(line);
    if (line.empty() || line[0] == '#' || line[0] == '!') continue;
    const size_t sep = line.find_first_of("=:");
    if (sep == std::string::npos || sep == 0) {
      throw CLI::ValidationError("--command-config", path + ":" + std::to_string(n) +
                                                         ": want key=value");
    }
    add_property(ctx, trim(line.substr(0, sep)), trim(line.substr(sep + 1)),
                 "--command-config " + path + ":" + std::to_string(n));
  }
}

}  // namespace

// One "sluice: <error>" line, a did-you-mean when a word is close to a subcommand or an
// option, and one pointer to --help for the command that was being parsed.
void report_usage_error(CLI::App& app, int argc, char** argv, const CLI::ParseError& e) {
  CLI::App* at = deepest_subcommand(app, argc, argv);
  std::vector<std::string> words;
  for (int i = 1; i < argc; ++i) {
    if (argv[i][0] != '-') words.emplace_back(argv[i]);
  }
  bool suggested = false;
  for (const auto& w : words) {
    std::string best;
    size_t best_d = 3;
    for (const CLI::App* sub : at->get_subcommands({})) {
      size_t d = edit_distance(w, sub->get_name());
      if (d > 0 && d < best_d && d < sub->get_name().size()) {
        best_d = d;
        best = sub->get_name();
      }
    }
    if (!best.empty()) {
      suggested = true;
      std::cerr << "sluice: unknown command '" << w << "'\nDid you mean '" << best << "'?\n";
      break;
    }
  }
  for (int i = 1; i < argc && !suggested; ++i) {
    std::string arg = argv[i];
    if (arg == "--") break;
    std::string best = closest_option(at, arg);
    if (!best.empty()) {
      suggested = true;
      std::cerr << "sluice: unknown option '" << arg.substr(0, arg.find('=')) << "'\nDid you mean '"
                << best << "'?\n";
    }
  }
  if (!suggested) std::cerr << "sluice: " << e.what() << "\n";
  std::string path;
  for (const CLI::App* a = at; a != nullptr && a->get_parent() != nullptr; a = a->get_parent()) {
    path = " " + a->get_name() + path;
  }
  std::cerr << "Run 'sluice" << path << " --help' for usage.\n";
}

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
  app.add_flag("-v,--verbose", ctx.verbose, "Say what was done on success (stderr)");
  // Callbacks in this order: the file, then -X (which wins).
  app.add_option_function<std::string>(
      "--command-config", [&ctx](const std::string& path) { load_command_config(ctx, path); },
      "Client settings by their Kafka names from a properties file (key=value lines), e.g. "
      "security.protocol=SASL_SSL, ssl.ca.location=..., sasl.username=...");
  app.add_option_function<std::vector<std::string>>(
      "-X",
      [&ctx](const std::vector<std::string>& pairs) {
        for (const auto& kv : pairs) {
          const size_t eq = kv.find('=');
          if (eq == std::string::npos || eq == 0) {
            throw CLI::ValidationError("-X", "wants key=value, got '" + kv + "'");
          }
          add_property(ctx, kv.substr(0, eq), kv.substr(eq + 1), "-X");
        }
      },
      "Client setting by its Kafka name for every connection, e.g. -X security.protocol=SSL "
      "(repeatable)");
  app.set_version_flag("-V,--version", std::string("sluice ") + SLUICE_VERSION);
  register_topic(app, ctx);
  register_produce(app, ctx);
  register_consume(app, ctx);
  register_group(app, ctx);
  register_transaction(app, ctx);
  register_cluster(app, ctx);
  register_moves(app, ctx);
  register_acl(app, ctx);
  register_user(app, ctx);
  register_quota(app, ctx);
  register_top(app, ctx);
  register_bench(app, ctx);
  register_completion(app, ctx);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    report_usage_error(app, argc, argv, e);
    return kExitUsage;
  }
  ctx.admin_client.reset();
  return ctx.exit_code;
}
