// sluice cluster decommission | recommission | balance: replica moves through a broker's admin
// HTTP API (broker/admin_moves.cc). The controller decides the moves (cluster/balance.h) and
// the partitions' leaders carry them out; `decommission --wait` follows the progress until the
// broker holds nothing. Exit status 0 on success, 1 when the cluster refused or could not be
// reached (with the reason), 2 on a usage error.
#include <chrono>
#include <iostream>
#include <thread>

#include "cli/cli.h"
#include "cli/http.h"

namespace sluice::cli {
namespace {

struct MovesOptions {
  std::string admin = "127.0.0.1:9644";
  int timeout_ms = 10000;
  int32_t broker = -1;
  bool wait = false;
  int wait_s = 3600;
};

// The integer after `"name":` in a document the broker wrote (one known shape); -1 if none.
int64_t json_int(const std::string& doc, const std::string& name) {
  const auto at = doc.find("\"" + name + "\":");
  if (at == std::string::npos) return -1;
  return std::strtoll(doc.c_str() + at + name.size() + 3, nullptr, 10);
}

std::string json_error_text(const std::string& doc) {
  const auto at = doc.find("\"error\":\"");
  if (at == std::string::npos) return doc;
  const auto end = doc.find('"', at + 9);
  return doc.substr(at + 9, end == std::string::npos ? std::string::npos : end - at - 9);
}

// One admin call; prints the failure and sets the exit code when it is not `ok_status`.
std::optional<HttpReply> call(Context& ctx, const MovesOptions& o, http::verb verb,
                              const std::string& path, const char* what) {
  auto addr = split_admin_address(o.admin);
  if (!addr) {
    usage_error(ctx, addr.error().message);
    return std::nullopt;
  }
  auto reply = http_request(verb, addr->first, addr->second, path,
                            std::chrono::milliseconds(o.timeout_ms));
  if (!reply) {
    std::cerr << "sluice: cluster " << what << ": admin API at " << o.admin
              << " unreachable: " << reply.error().message << "\n"
              << "hint: give a broker's admin address with --admin (or SLUICE_ADMIN)\n";
    ctx.exit_code = kExitFailure;
    return std::nullopt;
  }
  if (reply->status >= 300) {
    std::cerr << "sluice: cluster " << what << ": " << json_error_text(reply->body) << " (HTTP "
              << reply->status << ")\n";
    ctx.exit_code = kExitFailure;
    return std::nullopt;
  }
  return *reply;
}

void decommission(Context& ctx, const MovesOptions& o, bool on) {
  const char* what = on ? "decommission" : "recommission";
  const std::string path = "/v1/brokers/" + std::to_string(o.broker) + "/" + what;
  auto reply = call(ctx, o, http::verb::post, path, what);
  if (!reply) return;
  const int64_t replicas = json_int(reply->body, "replicas");
  if (!on) {
    std::cout << "broker " << o.broker << " takes replicas again\n";
    return;
  }
  std::cout << "broker " << o.broker << " is being decommissioned: " << replicas
            << " replica(s) to move off it\n";
  if (!o.wait) {
    std::cout << "follow it with: sluice cluster decommission " << o.broker << " --wait\n";
    return;
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(o.wait_s);
  int64_t last = replicas;
  while (std::chrono::steady_clock::now() < deadline) {
    auto status = call(ctx, o, http::verb::get,
                       "/v1/brokers/" + std::to_string(o.broker) + "/decommission", what);
    if (!status) return;
    const int64_t left = json_int(status->body, "replicas");
    if (left == 0) {
      std::cout << "broker " << o.broker << " holds no replicas: it can be stopped\n";
      return;
    }
    if (left != last) {
      std::cout << left << " replica(s) left on broker " << o.broker << " ("
                << json_int(status->body, "moving") << " moving)\n";
      last = left;
    }
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  std::cerr << "sluice: cluster decommission: " << last << " replica(s) still on broker "
            << o.broker << " after " << o.wait_s << " s (moves go on; run it again to follow)\n";
  ctx.exit_code = kExitFailure;
}

void balance(Context& ctx, const MovesOptions& o) {
  auto reply = call(ctx, o, http::verb::post, "/v1/cluster/balance", "balance");
  if (!reply) return;
  const int64_t n = json_int(reply->body, "partitions_to_move");
  if (n <= 0) {
    std::cout << "replicas are balanced: nothing to move\n";
  } else {
    std::cout << n << " partition(s) will move; follow with: sluice cluster moves\n";
  }
}

void common_options(CLI::App* cmd, MovesOptions& o) {
  cmd->add_option("--admin", o.admin, "A broker's admin API address (host:port)")
      ->envname("SLUICE_ADMIN")
      ->capture_default_str();
  cmd->add_option("--timeout-ms", o.timeout_ms, "Give up on one admin call after this long")
      ->capture_default_str()
      ->check(CLI::Range(1, 600000));
}

}  // namespace

void register_cluster_moves(CLI::App& cluster, Context& ctx) {
  auto o = std::make_shared<MovesOptions>();
  auto* dec = cluster.add_subcommand(
      "decommission",
      "Drain a broker: every replica on it moves to the others and it takes no new ones; then it "
      "can be stopped (undo with recommission)");
  dec->add_option("ID", o->broker, "The broker's node id")->required()->check(CLI::NonNegativeNumber);
  dec->add_flag("--wait", o->wait, "Follow the progress until the broker holds nothing");
  dec->add_option("--wait-s", o->wait_s, "With --wait: give up following after this long")
      ->capture_default_str();
  common_options(dec, *o);
  dec->callback([&ctx, o] { decommission(ctx, *o, true); });

  auto* rec = cluster.add_subcommand(
      "recommission", "Undo a decommission: the broker takes replicas again (the balancer may "
                      "move some back to it)");
  rec->add_option("ID", o->broker, "The broker's node id")->required()->check(CLI::NonNegativeNumber);
  common_options(rec, *o);
  rec->callback([&ctx, o] { decommission(ctx, *o, false); });

  auto* bal = cluster.add_subcommand(
      "balance", "Plan and start the replica moves that spread replicas evenly over the brokers");
  common_options(bal, *o);
  bal->callback([&ctx, o] { balance(ctx, *o); });
}

}  // namespace sluice::cli
