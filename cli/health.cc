// sluice cluster health: a broker's /v1/health from its admin HTTP API (broker/README.md), read
// with Boost.Beast. Exit status 0 when the broker is ready, 1 when it is not or cannot be
// reached (with the reason), 2 on a usage error.
#include <chrono>
#include <iostream>
#include <optional>

#include "cli/cli.h"
#include "cli/http.h"

namespace sluice::cli {
namespace {

// The strings of the array that follows `"name":` in a JSON document the broker wrote (no
// general parser: the CLI is built on the client libraries only, and this is one known shape).
std::vector<std::string> json_string_array(const std::string& doc, const std::string& name) {
  std::vector<std::string> out;
  auto at = doc.find("\"" + name + "\":[");
  if (at == std::string::npos) return out;
  at += name.size() + 4;
  std::string cur;
  bool in_string = false;
  for (; at < doc.size(); ++at) {
    const char c = doc[at];
    if (!in_string) {
      if (c == ']') break;
      if (c == '"') in_string = true;
      continue;
    }
    if (c == '\\' && at + 1 < doc.size()) {
      const char e = doc[++at];
      cur += e == 'n' ? '\n' : e == 't' ? '\t' : e;
    } else if (c == '"') {
      out.push_back(std::move(cur));
      cur.clear();
      in_string = false;
    } else {
      cur += c;
    }
  }
  return out;
}

struct HealthOptions {
  std::string admin = "127.0.0.1:9644";
  int timeout_ms = 5000;
  bool json = false;
};

void cluster_health(Context& ctx, const HealthOptions& o) {
  const auto colon = o.admin.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == o.admin.size()) {
    return usage_error(ctx, "--admin wants host:port, not '" + o.admin + "'");
  }
  const std::string host = o.admin.substr(0, colon);
  const std::string port = o.admin.substr(colon + 1);
  auto reply = http_request(http::verb::get, host, port, "/v1/health",
                            std::chrono::milliseconds(o.timeout_ms));
  if (!reply) {
    std::cerr << "sluice: cluster health: admin API at " << o.admin
              << " unreachable: " << reply.error().message << "\n"
              << "hint: is sluiced running with --admin.listen " << o.admin
              << "? Set --admin or SLUICE_ADMIN.\n";
    ctx.exit_code = kExitFailure;
    return;
  }
  const bool ready = reply->status == 200 && reply->body.find("\"ready\":true") != std::string::npos;
  if (o.json) {
    std::cout << reply->body;
    if (!reply->body.ends_with('\n')) std::cout << "\n";
  } else if (reply->status != 200 && reply->status != 503) {
    std::cerr << "sluice: cluster health: " << o.admin << " answered HTTP " << reply->status
              << " (is that a Sluice admin API?)\n";
  } else if (ready) {
    std::cout << o.admin << ": ready\n";
  } else {
    std::cout << o.admin << ": not ready";
    const auto reasons = json_string_array(reply->body, "reasons");
    for (size_t i = 0; i < reasons.size(); ++i) std::cout << (i ? "; " : ": ") << reasons[i];
    std::cout << "\n";
  }
  if (!ready) ctx.exit_code = kExitFailure;
}

}  // namespace

void register_cluster_health(CLI::App& cluster, Context& ctx) {
  auto o = std::make_shared<HealthOptions>();
  auto* health = cluster.add_subcommand(
      "health",
      "Whether a broker is ready (recovered, registered, unfenced), from its admin HTTP API; "
      "exit status 0 when ready, 1 when not or unreachable");
  health->add_option("--admin", o->admin, "The broker's admin API address (host:port)")
      ->envname("SLUICE_ADMIN")
      ->capture_default_str();
  health->add_option("--timeout-ms", o->timeout_ms, "Give up after this long")
      ->capture_default_str()
      ->check(CLI::Range(1, 600000));
  health->add_flag("--json", o->json, "Print the broker's /v1/health document as it is");
  health->callback([&ctx, o] { cluster_health(ctx, *o); });
}

}  // namespace sluice::cli
