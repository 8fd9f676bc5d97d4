// sluice topic move, sluice topic elect, sluice cluster moves: replica moves and preferred
// leader elections (AlterPartitionReassignments, ElectLeaders, ListPartitionReassignments).
#include <charconv>
#include <chrono>
#include <iomanip>
#include <iostream>
#include <map>
#include <set>
#include <thread>

#include "cli/cli.h"
#include "protocol/error_codes.h"

namespace sluice::cli {

namespace {

using client::kAnyBroker;
using kafka::ErrorCode;

std::optional<int32_t> parse_int(std::string_view s) {
  int32_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

// TOPIC or TOPIC:PARTITION (topic names never hold ':').
struct Target {
  std::string topic;
  std::optional<int32_t> partition;
};

std::optional<Target> parse_target(const std::string& s, std::string& why) {
  Target t;
  auto colon = s.rfind(':');
  t.topic = s.substr(0, colon);
  if (colon != std::string::npos) {
    auto p = parse_int(std::string_view(s).substr(colon + 1));
    if (!p || *p < 0) {
      why = "'" + s + "': the partition after ':' must be a number >= 0";
      return std::nullopt;
    }
    t.partition = *p;
  }
  if (t.topic.empty()) {
    why = "'" + s + "': no topic name";
    return std::nullopt;
  }
  return t;
}

std::optional<std::vector<int32_t>> parse_brokers(const std::string& s, std::string& why) {
  std::vector<int32_t> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    auto id = parse_int(std::string_view(s).substr(start, end - start));
    if (!id || *id < 0) {
      why = "--to wants broker ids separated by commas (like 1,2,3), got '" + s + "'";
      return std::nullopt;
    }
    out.push_back(*id);
    start = end + 1;
  }
  return out;
}

std::string join(const std::vector<int32_t>& ids) {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) out += (i ? "," : "") + std::to_string(ids[i]);
  return out;
}

// A partition the cluster refused: "sluice: <what>: NAME (code): reason", exit status 1.
void partition_failed(Context& ctx, const std::string& what, int16_t code,
                      const std::optional<std::string>& message) {
  std::cerr << "sluice: " << what << ": " << kafka::error_name(static_cast<ErrorCode>(code)) << " ("
            << code << ")";
  if (message && !message->empty()) std::cerr << ": " << *message;
  std::cerr << "\n";
  ctx.exit_code = kExitFailure;
}

// The partitions of `t` (the one named, or every partition of the topic) with their replicas
// now (empty for a partition the metadata does not have: the broker answers for it).
Result<std::map<int32_t, std::vector<int32_t>>> partitions_of(Context& ctx, const Target& t) {
  auto md = ctx.admin().metadata({t.topic}, true);
  if (!md) return unexpected(md.error());
  const client::TopicInfo* info = (*md)->topic(t.topic);
  if (!info || info->error_code != 0) {
    return unexpected(client::kafka_error(info ? info->error_code : 3, "topic '" + t.topic + "'"));
  }
  std::map<int32_t, std::vector<int32_t>> out;
  if (t.partition) out[*t.partition] = {};
  for (const auto& p : info->partitions) {
    if (!t.partition || p.partition == *t.partition) out[p.partition] = p.replicas;
  }
  return out;
}

using ListTopics =
    std::vector<kafka::ListPartitionReassignmentsRequest::ListPartitionReassignmentsTopics>;

Result<kafka::ListPartitionReassignmentsResponse> list_moves(Context& ctx,
                                                             std::optional<ListTopics> topics) {
  kafka::ListPartitionReassignmentsRequest req;
  req.topics = std::move(topics);
  auto r = ctx.admin().call_as<kafka::ListPartitionReassignmentsResponse>(kAnyBroker, req);
  if (!r) return unexpected(r.error());
  if (r->error_code != 0) {
    Error e = client::kafka_error(r->error_code, "ListPartitionReassignments");
    if (r->error_message) e.message += ": " + *r->error_message;
    return unexpected(e);
  }
  return r;
}

struct MoveOptions {
  std::string target;
  std::string to;
  bool cancel = false;
  bool wait = false;
  int timeout_s = 600;
};

void topic_move(Context& ctx, const MoveOptions& o) {
  std::string why;
  auto t = parse_target(o.target, why);
  if (!t) return usage_error(ctx, "topic move: " + why);
  if (o.cancel == !o.to.empty()) {
    return usage_error(ctx, "topic move: give either --to BROKERS or --cancel");
  }
  std::optional<std::vector<int32_t>> brokers;
  if (!o.cancel) {
    brokers = parse_brokers(o.to, why);
    if (!brokers) return usage_error(ctx, "topic move: " + why);
  }
  const std::string what = "topic move " + o.target;
  auto parts = partitions_of(ctx, *t);
  if (!parts) return fail(ctx, what, parts.error());

  kafka::AlterPartitionReassignmentsRequest req;
  req.topics.resize(1);
  req.topics[0].name = t->topic;
  for (const auto& [p, now] : *parts) req.topics[0].partitions.push_back({p, brokers});
  auto r = ctx.admin().call_as<kafka::AlterPartitionReassignmentsResponse>(kAnyBroker, req);
  if (!r) return fail(ctx, what, r.error());
  if (r->error_code != 0) {
    Error e = client::kafka_error(r->error_code, what);
    if (r->error_message) e.message += ": " + *r->error_message;
    return fail(ctx, what, e);
  }
  std::set<int32_t> started;
  for (const auto& rt : r->responses) {
    for (const auto& rp : rt.partitions) {
      const std::string name = rt.name + ":" + std::to_string(rp.partition_index);
      if (rp.error_code != 0) {
        partition_failed(ctx, "topic move " + name, rp.error_code, rp.error_message);
        continue;
      }
      started.insert(rp.partition_index);
      if (o.cancel) {
        std::cout << name << ": move cancelled (back to its replicas before the move)\n";
      } else if (parts->count(rp.partition_index) && (*parts)[rp.partition_index] == *brokers) {
        std::cout << name << ": already on replicas " << join(*brokers) << "\n";
      } else {
        std::cout << name << ": moving to replicas " << join(*brokers) << "\n";
      }
    }
  }
  if (!o.wait || started.empty()) return;
  // Waits until none of the accepted partitions has a move in progress.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(o.timeout_s);
  for (;;) {
    ListTopics ask(1);
    ask[0].name = t->topic;
    ask[0].partition_indexes.assign(started.begin(), started.end());
    auto moves = list_moves(ctx, ask);
    if (!moves) return fail(ctx, what, moves.error());
    size_t left = 0;
    for (const auto& mt : moves->topics) left += mt.partitions.size();
    if (left == 0) {
      std::cout << "done: " << started.size() << " partition(s) "
                << (o.cancel ? "back on their replicas" : "on their new replicas") << "\n";
      return;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return fail(ctx, what,
                  Error{static_cast<int>(client::Errc::kTimeout),
                        std::to_string(left) + " partition(s) still moving after " +
                            std::to_string(o.timeout_s) + " s (see `sluice cluster moves`)"});
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

void cluster_moves(Context& ctx) {
  auto r = list_moves(ctx, std::nullopt);
  if (!r) return fail(ctx, "cluster moves", r.error());
  size_t rows = 0;
  for (const auto& t : r->topics) rows += t.partitions.size();
  if (rows == 0) {
    std::cout << "no moves in progress\n";
    return;
  }
  size_t width = 24;
  for (const auto& t : r->topics) width = std::max(width, t.name.size() + 2);
  std::cout << std::left << std::setw(static_cast<int>(width)) << "TOPIC" << std::setw(11)
            << "PARTITION" << std::setw(20) << "REPLICAS" << std::setw(14) << "ADDING"
            << "REMOVING\n";
  for (const auto& t : r->topics) {
    for (const auto& p : t.partitions) {
      auto list = [](const std::vector<int32_t>& ids) { return ids.empty() ? "-" : join(ids); };
      std::cout << std::left << std::setw(static_cast<int>(width)) << t.name << std::setw(11)
                << p.partition_index << std::setw(20) << list(p.replicas) << std::setw(14)
                << list(p.adding_replicas) << list(p.removing_replicas) << "\n";
    }
  }
}

void topic_elect(Context& ctx, const std::string& target) {
  std::string why;
  auto t = parse_target(target, why);
  if (!t) return usage_error(ctx, "topic elect: " + why);
  const std::string what = "topic elect " + target;
  auto parts = partitions_of(ctx, *t);
  if (!parts) return fail(ctx, what, parts.error());
  kafka::ElectLeadersRequest req;
  req.election_type = 0;   // preferred
  req.timeout_ms = 10000;  // the broker answers once the preferred replicas lead
  req.topic_partitions.emplace(1);
  (*req.topic_partitions)[0].topic = t->topic;
  for (const auto& [p, now] : *parts) (*req.topic_partitions)[0].partition_id.push_back(p);
  auto r = ctx.admin().call_as<kafka::ElectLeadersResponse>(kAnyBroker, req);
  if (!r) return fail(ctx, what, r.error());
  if (r->error_code != 0) return fail(ctx, what, client::kafka_error(r->error_code, what));
  for (const auto& rt : r->replica_election_results) {
    for (const auto& p : rt.partition_result) {
      const std::string name = rt.topic + ":" + std::to_string(p.partition_id);
      if (p.error_code == 0) {
        const auto& replicas = (*parts)[p.partition_id];
        std::cout << name << ": the preferred replica"
                  << (replicas.empty() ? "" : " (broker " + std::to_string(replicas[0]) + ")")
                  << " leads now\n";
      } else if (p.error_code == static_cast<int16_t>(ErrorCode::kElectionNotNeeded)) {
        std::cout << name << ": the preferred replica already leads\n";
      } else {
        partition_failed(ctx, "topic elect " + name, p.error_code, p.error_message);
      }
    }
  }
}

}  // namespace

void register_moves(CLI::App& app, Context& ctx) {
  auto* topic = app.get_subcommand("topic");
  auto m = std::make_shared<MoveOptions>();
  auto* move = topic->add_subcommand(
      "move",
      "Move a topic's replicas to other brokers (all partitions, or TOPIC:PARTITION); the "
      "move runs in the background, see `sluice cluster moves`");
  move->add_option("target", m->target, "TOPIC or TOPIC:PARTITION")->required();
  move->add_option("--to", m->to, "The new replicas, broker ids like 1,2,3 (the first leads)");
  move->add_flag("--cancel", m->cancel, "Cancel a move in progress (back to the old replicas)");
  move->add_flag("--wait", m->wait, "Wait until the move is complete");
  move->add_option("--timeout", m->timeout_s, "Seconds --wait waits at most")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000, "a number >= 1"));
  move->callback([&ctx, m] { topic_move(ctx, *m); });

  auto elect_target = std::make_shared<std::string>();
  auto* elect = topic->add_subcommand(
      "elect", "Preferred leader election: the first replica of each partition leads again");
  elect->add_option("target", *elect_target, "TOPIC or TOPIC:PARTITION")->required();
  elect->callback([&ctx, elect_target] { topic_elect(ctx, *elect_target); });

  auto* cluster = app.get_subcommand("cluster");
  cluster->add_subcommand("moves", "Replica moves in progress: replicas, adding, removing")
      ->callback([&ctx] { cluster_moves(ctx); });
}

}  // namespace sluice::cli
