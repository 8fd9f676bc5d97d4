// Moves and leader balance, carried out by each partition's Raft leader (cluster.proto,
// Partition: replicas / adding / removing). The controller only records what a partition
// should become; the leader changes its group's membership one server at a time:
//   1. a target replica that is not a member joins as a learner (its broker opened an empty
//      replica when the metadata named it: reconcile), and catches up from the leader's log;
//   2. a learner holding everything committed is promoted to voter;
//   3. once every target replica votes, the old voters are removed one at a time (the leader
//      hands leadership to a caught-up target voter before its own removal);
//   4. with the voters exactly the target, the leader reports CompleteReassignment; the
//      controller commits replicas = target and the removed brokers delete their files.
// Every step is a committed Raft configuration, so a failover of the leader or of the
// controller in the middle only delays the next step: the new leader reads the same target
// from the metadata and the group's configuration from its log, and goes on. The group never
// has fewer caught-up voters than it started with, because removals come after promotions.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "broker/broker.h"

namespace sluice::broker {

namespace {

constexpr auto kReportAgain = std::chrono::seconds(2);

void put(std::vector<raft::NodeId>& ids, int32_t id) {
  ids.push_back(raft::NodeId(id));
  std::sort(ids.begin(), ids.end());
}

void drop(std::vector<raft::NodeId>& ids, int32_t id) {
  ids.erase(std::remove(ids.begin(), ids.end(), raft::NodeId(id)), ids.end());
}

std::string name_of(const Partition& p) { return p.tp.topic + "-" + std::to_string(p.tp.partition); }

}  // namespace

void Broker::drive_moves(ShardState& ss, const TopicsSnapshot& snap) {
  auto visit = [&](Partition& p) {
    if (!p.replica || p.deleting || !p.replica->serving()) {
      if (!p.learners.empty()) p.learners.clear();
      return;
    }
    const PartitionInfo* info = snap.partition(p.tp.topic, p.tp.partition);
    if (info == nullptr) return;
    if (!info->moving() && !p.learners.empty()) p.learners.clear();
    if (info->moving()) {
      drive_move(p, *info);
    } else {
      prefer_leader(p, *info, snap);
    }
  };
  // A sleeping replica (a leader alone in its group, idle) has nothing to move or hand over
  // until the metadata asks for it: every partition is looked at when the metadata changed,
  // and every few seconds anyway; in between only the awake ones.
  constexpr uint64_t kFullEveryTicks = 100;
  if (snap.version != ss.moves_seen_version ||
      ss.raft_ticks - ss.moves_full_tick >= kFullEveryTicks) {
    ss.moves_seen_version = snap.version;
    ss.moves_full_tick = ss.raft_ticks;
    for (auto& [tp, p] : ss.partitions) visit(*p);
    return;
  }
  // By index: a move may wake a replica, which joins the list's end.
  for (size_t i = 0; i < ss.awake.size(); ++i) {
    auto found = ss.by_group.find(ss.awake[i]);
    if (found != ss.by_group.end()) visit(*found->second);
  }
}

void Broker::drive_move(Partition& p, const PartitionInfo& info) {
  Replica& r = *p.replica;
  const std::vector<int32_t> target = info.target();
  raft::ConfState conf = r.conf();
  p.learners.clear();
  for (raft::NodeId l : conf.learners) p.learners.push_back(*l);
  auto change = [&](const raft::ConfState& next, const char* what, int32_t who) {
    auto res = r.change_membership(next);
    if (res) {
      // The leader sends to a new learner as soon as the change is in its log: the throttle
      // must know it now, not at the next tick (catch-up once outran the budget meanwhile).
      p.learners.clear();
      for (raft::NodeId l : next.learners) p.learners.push_back(*l);
      spdlog::info("{}: move: {} broker {}", name_of(p), what, who);
    } else if (res.error() != raft::Errc::kConfigPending) {
      spdlog::debug("{}: move: cannot {} broker {} yet ({})", name_of(p), what, who,
                    static_cast<int>(res.error()));
    }
  };
  // 0. Learners the target no longer wants (a move replaced or cancelled) leave first.
  for (raft::NodeId l : conf.learners) {
    if (std::find(target.begin(), target.end(), *l) == target.end()) {
      drop(conf.learners, *l);
      change(conf, "removing learner", *l);
      return;
    }
  }
  // 1. Target replicas that are not members join as learners.
  for (int32_t id : target) {
    if (!conf.is_member(raft::NodeId(id))) {
      put(conf.learners, id);
      change(conf, "adding as learner", id);
      return;
    }
  }
  // 2. Learners that hold everything committed become voters.
  for (raft::NodeId l : conf.learners) {
    if (r.caught_up(*l)) {
      drop(conf.learners, *l);
      put(conf.voters, *l);
      change(conf, "promoting to voter", *l);
    }
    return;  // one at a time; the others catch up meanwhile
  }
  // 3. Every target replica votes: the old ones leave, this broker last and by handing off.
  for (raft::NodeId v : conf.voters) {
    if (std::find(target.begin(), target.end(), *v) != target.end()) continue;
    if (*v == config_.node_id) {
      for (int32_t heir : target) {
        if (r.caught_up(heir)) {
          spdlog::info("{}: move: handing leadership to broker {} before leaving", name_of(p),
                       heir);
          (void)r.transfer_leadership(heir);
          return;
        }
      }
      return;
    }
    drop(conf.voters, *v);
    change(conf, "removing voter", *v);
    return;
  }
  // 4. The voters are the target: report it (again, until the metadata shows it done).
  const auto now = std::chrono::steady_clock::now();
  if (now - p.move_reported < kReportAgain) return;
  p.move_reported = now;
  cluster::pb::ControllerRequest req;
  auto* c = req.mutable_complete_reassignment();
  c->set_topic(p.tp.topic);
  c->set_partition(p.tp.partition);
  for (raft::NodeId v : conf.voters) c->add_voters(*v);
  const std::string name = name_of(p);
  cluster_->request(std::move(req), std::chrono::seconds(5),
                    [name](const cluster::pb::ControllerResponse& resp) {
                      if (resp.error_code() != 0) {
                        spdlog::info("{}: move completion not taken ({}); will retry", name,
                                     resp.error_message());
                      }
                    });
}

void Broker::throttle_moves(Partition& p, std::vector<raft::Message>& messages) {
  auto over_budget = [this, &p](const raft::Message& m) {
    if (m.entries.empty() ||
        std::find(p.learners.begin(), p.learners.end(), *m.to) == p.learners.end()) {
      return false;
    }
    // Sent while the budget is not spent; one message may overdraw it (an append can be
    // larger than a whole second's budget), and the debt is paid back before the next.
    if (move_tokens_.load() <= 0) return true;
    int64_t bytes = 0;
    for (const auto& e : m.entries) bytes += static_cast<int64_t>(e.data.size());
    move_tokens_.fetch_sub(bytes);
    return false;
  };
  messages.erase(std::remove_if(messages.begin(), messages.end(), over_budget), messages.end());
}

void Broker::prefer_leader(Partition& p, const PartitionInfo& info, const TopicsSnapshot& snap) {
  if (info.replicas.empty() || info.replicas[0] == config_.node_id) {
    p.prefer_since = {};
    return;
  }
  if (!info.elect_preferred && !config_.leader_balancing) return;
  const int32_t preferred = info.replicas[0];
  auto b = snap.brokers.find(preferred);
  Replica& r = *p.replica;
  const bool ready = b != snap.brokers.end() && !b->second.fenced &&
                     r.conf().is_voter(raft::NodeId(preferred)) && r.caught_up(preferred);
  const auto now = std::chrono::steady_clock::now();
  if (!ready) {
    p.prefer_since = {};
    return;
  }
  if (p.prefer_since == std::chrono::steady_clock::time_point{}) p.prefer_since = now;
  // An asked election goes at once; balancing waits until the preferred replica has been
  // caught up for a while (it may have just come back).
  if (!info.elect_preferred &&
      now - p.prefer_since < std::chrono::milliseconds(config_.leader_balancing_delay_ms)) {
    return;
  }
  spdlog::info("{}: handing leadership to the preferred replica, broker {}{}", name_of(p),
               preferred, info.elect_preferred ? " (election asked)" : "");
  p.prefer_since = {};
  (void)r.transfer_leadership(preferred);
}

}  // namespace sluice::broker
