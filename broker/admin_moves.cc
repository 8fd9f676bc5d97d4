// The admin API's moves (issue #14), beside broker/admin.cc:
//   POST /v1/brokers/{id}/decommission   drain a broker: its replicas move off (202)
//   POST /v1/brokers/{id}/recommission   undo it (the balancer may move replicas back)
//   GET  /v1/brokers/{id}/decommission   progress: replicas still on it, partitions moving
//   POST /v1/cluster/balance             plan and start the moves that balance replicas now
//   GET  /v1/partitions/reassignments    the moves in progress
// Changes go to the controller leader through the registry, like any admin change, and are
// answered once this broker's metadata holds them.
#include <charconv>

#include "broker/broker.h"
#include "common/json.h"

namespace sluice::broker {

namespace {

AdminResponse json_reply(unsigned status, JsonWriter& w) {
  std::string body = w.take();
  body += '\n';
  return AdminResponse{status, "application/json", std::move(body)};
}

AdminResponse json_message(unsigned status, std::string_view key, std::string_view message) {
  JsonWriter w;
  w.begin_object().field(key, message).end_object();
  return json_reply(status, w);
}

unsigned http_status_of(kafka::ErrorCode code) {
  switch (code) {
    case kafka::ErrorCode::kBrokerNotAvailable:
    case kafka::ErrorCode::kUnknownTopicOrPartition:
      return 404;
    case kafka::ErrorCode::kInvalidRequest:
    case kafka::ErrorCode::kInvalidReplicaAssignment:
      return 400;
    default:
      return 503;
  }
}

// "/v1/brokers/{id}/{what}" -> id and what.
bool broker_path(std::string_view target, int32_t& id, std::string_view& what) {
  constexpr std::string_view kPrefix = "/v1/brokers/";
  if (!target.starts_with(kPrefix)) return false;
  target.remove_prefix(kPrefix.size());
  const auto slash = target.find('/');
  if (slash == std::string_view::npos) return false;
  const std::string_view num = target.substr(0, slash);
  auto [end, ec] = std::from_chars(num.data(), num.data() + num.size(), id);
  if (ec != std::errc() || end != num.data() + num.size()) return false;
  what = target.substr(slash + 1);
  return true;
}

}  // namespace

bool Broker::handle_admin_moves(const AdminRequest& req, std::string_view target,
                                std::function<void(AdminResponse)>& done) {
  const bool post = req.method == "POST";
  int32_t id = -1;
  std::string_view what;
  if (broker_path(target, id, what) && (what == "decommission" || what == "recommission")) {
    if (!post && what == "decommission") {
      done(decommission_status(id));
      return true;
    }
    if (!post) {
      done(json_message(405, "error", "POST " + std::string(target) + " to recommission"));
      return true;
    }
    const bool on = what == "decommission";
    registry_->decommission(id, on, [this, id, on, done](Result<void, TopicError> r) {
      if (!r) return done(json_message(http_status_of(r.error().code), "error", r.error().message));
      AdminResponse status = decommission_status(id);
      status.status = on ? 202 : 200;
      done(std::move(status));
    });
    return true;
  }
  if (target == "/v1/cluster/balance") {
    if (!post) {
      done(json_message(405, "error", "POST /v1/cluster/balance to start a balance"));
      return true;
    }
    registry_->balance([done](Result<int32_t, TopicError> r) {
      if (!r) return done(json_message(http_status_of(r.error().code), "error", r.error().message));
      JsonWriter w;
      w.begin_object().field("partitions_to_move", *r).end_object();
      done(json_reply(202, w));
    });
    return true;
  }
  if (target == "/v1/partitions/reassignments") {
    auto snap = registry_->snapshot();
    JsonWriter w;
    w.begin_object().key("reassignments").begin_array();
    for (const auto& [name, t] : snap->topics) {
      for (size_t i = 0; i < t.parts.size(); ++i) {
        const PartitionInfo& p = t.parts[i];
        if (!p.moving()) continue;
        auto list = [&w](std::string_view key, const std::vector<int32_t>& ids) {
          w.key(key).begin_array();
          for (int32_t b : ids) w.value(b);
          w.end_array();
        };
        w.begin_object().field("topic", name).field("partition", static_cast<int32_t>(i));
        list("replicas", p.replicas);
        list("target", p.target());
        list("adding", p.adding);
        list("removing", p.removing);
        w.field("leader", p.leader).end_object();
      }
    }
    w.end_array().end_object();
    done(json_reply(200, w));
    return true;
  }
  return false;
}

AdminResponse Broker::decommission_status(int32_t id) {
  auto snap = registry_->snapshot();
  auto b = snap->brokers.find(id);
  if (b == snap->brokers.end()) {
    return json_message(404, "error", "broker " + std::to_string(id) + " is not registered");
  }
  int64_t replicas = 0, moving = 0;
  for (const auto& [name, t] : snap->topics) {
    for (const auto& p : t.parts) {
      if (std::find(p.replicas.begin(), p.replicas.end(), id) == p.replicas.end()) continue;
      ++replicas;
      moving += p.moving() ? 1 : 0;
    }
  }
  JsonWriter w;
  w.begin_object()
      .field("broker", id)
      .field("decommissioned", b->second.decommissioned)
      .field("replicas", replicas)
      .field("moving", moving)
      .field("done", b->second.decommissioned && replicas == 0)
      .end_object();
  return json_reply(200, w);
}

}  // namespace sluice::broker
