// Client quotas in the cluster metadata (KIP-546): DescribeClientQuotas (48) and
// AlterClientQuotas (49), v0-1. This broker checks each entry (cluster/quotas.h) and sends the
// accepted ones to the controller in one change; every broker enforces what the image holds
// (QuotaManager, broker/quota_manager.h).
#include <spdlog/spdlog.h>

#include <set>
#include <string>
#include <vector>

#include "broker/broker.h"
#include "broker/kafka_errors.h"
#include "broker/session.h"
#include "cluster/quotas.h"

namespace sluice::broker {

using cluster::acl::Operation;
using cluster::acl::ResourceType;
using kafka::ErrorCode;
namespace quotas = cluster::quotas;

std::string Broker::quota_user(const Request& req) {
  return QuotaManager::quota_user(req.conn.session ? req.conn.session->principal
                                                   : std::string("User:ANONYMOUS"));
}

int32_t Broker::note_throttle(const Request& req, bool any_quota, int32_t recorded) {
  if (Session* session = req.conn.session.get()) {
    // Held to a quota (of either kind) until the cluster has none at all.
    if (!any_quota) {
      session->quota_limited = false;
    } else if (recorded >= 0) {
      session->quota_limited = true;
    }
    if (recorded > 0) {
      session->throttled_until = std::max(
          session->throttled_until, Session::Clock::now() + std::chrono::milliseconds(recorded));
    }
  }
  return std::max(0, recorded);
}

int32_t Broker::record_produce(const Request& req) {
  if (!quotas_.any()) return note_throttle(req, false, -1);
  return note_throttle(
      req, true,
      quotas_.record(QuotaManager::Kind::kProduce, quota_user(req), req.header.client_id,
                     static_cast<double>(req.frame.buffer->size() + 4)));
}

bool Broker::MutationQuota::take(int32_t partitions) {
  if (partitions <= 0 || !broker_.quotas_.any()) return true;
  auto m =
      broker_.quotas_.record_mutation(quota_user(req_), req_.header.client_id, partitions, strict_);
  if (!m) return true;
  limited_ = true;
  throttle_ms_ = std::max(throttle_ms_, m->throttle_ms);
  return m->accepted;
}

std::function<void()> Broker::MutationQuota::refund(int32_t partitions) const {
  if (!limited_ || partitions <= 0) return [] {};
  return [quotas = &broker_.quotas_, user = quota_user(req_), client = req_.header.client_id,
          partitions] { quotas->refund_mutation(user, client, partitions); };
}

int32_t Broker::MutationQuota::finish() {
  if (!limited_) return 0;
  return note_throttle(req_, true, throttle_ms_);
}

void Broker::handle_describe_client_quotas(std::shared_ptr<Request> req,
                                           const kafka::DescribeClientQuotasRequest& body) {
  kafka::DescribeClientQuotasResponse resp;
  if (!allowed(*req, Operation::kDescribeConfigs, ResourceType::kCluster,
               cluster::acl::kClusterName)) {
    resp.error_code = code(ErrorCode::kClusterAuthorizationFailed);
    resp.error_message = "DESCRIBE_CONFIGS on the cluster is needed to describe client quotas";
    respond(*req, resp);
    return;
  }
  std::vector<quotas::Component> components;
  for (const auto& c : body.components) {
    components.push_back({c.entity_type, c.match_type, c.match});
  }
  auto found = quotas::describe(*cluster_->image(), components, body.strict);
  if (!found) {
    resp.error_code = code(found.error().code);
    resp.error_message = found.error().message;
    respond(*req, resp);
    return;
  }
  resp.entries.emplace();
  for (const auto& d : *found) {
    kafka::DescribeClientQuotasResponse::EntryData e;
    for (const auto& [type, name] : d.entity) e.entity.push_back({type, name});
    for (const auto& [key, value] : d.values) e.values.push_back({key, value});
    resp.entries->push_back(std::move(e));
  }
  respond(*req, resp);
}

void Broker::handle_alter_client_quotas(std::shared_ptr<Request> req,
                                        const kafka::AlterClientQuotasRequest& body) {
  using Entry = kafka::AlterClientQuotasResponse::EntryData;
  // One result per entry, in request order, each naming its entity as the request did.
  auto results = std::make_shared<std::vector<Entry>>();
  for (const auto& e : body.entries) {
    Entry r;
    for (const auto& p : e.entity) r.entity.push_back({p.entity_type, p.entity_name});
    results->push_back(std::move(r));
  }
  auto set_error = [](Entry& r, ErrorCode c, const std::string& message) {
    r.error_code = code(c);
    r.error_message = message;
  };
  if (!allowed(*req, Operation::kAlterConfigs, ResourceType::kCluster,
               cluster::acl::kClusterName)) {
    for (Entry& r : *results) {
      set_error(r, ErrorCode::kClusterAuthorizationFailed,
                "ALTER_CONFIGS on the cluster is needed to alter client quotas");
    }
    kafka::AlterClientQuotasResponse resp;
    resp.entries = std::move(*results);
    respond(*req, resp);
    return;
  }
  cluster::pb::ControllerRequest creq;
  creq.set_validate_only(body.validate_only);
  auto* alter = creq.mutable_alter_client_quotas();
  std::vector<size_t> sent;  // the entries in the change, by index
  std::set<quotas::Entity> seen;
  for (size_t i = 0; i < body.entries.size(); ++i) {
    const auto& e = body.entries[i];
    std::vector<quotas::EntityPart> entity;
    for (const auto& p : e.entity) entity.push_back({p.entity_type, p.entity_name});
    std::vector<quotas::Op> ops;
    for (const auto& o : e.ops) ops.push_back({o.key, o.value, o.remove});
    cluster::pb::AlterClientQuotas::Change change;
    if (auto refused = quotas::check_entry(entity, ops, change)) {
      set_error((*results)[i], refused->code, refused->message);
      continue;
    }
    quotas::Entity key = quotas::from_parts(change.entity());
    if (!seen.insert(key).second) {
      set_error((*results)[i], ErrorCode::kInvalidRequest,
                "Ignoring duplicate entity " + quotas::describe_entity(key));
      continue;
    }
    *alter->add_changes() = std::move(change);
    sent.push_back(i);
  }
  auto answer = [req, results, sent](const cluster::pb::ControllerResponse& r) {
    for (size_t i : sent) {
      if (r.error_code() != 0) {
        (*results)[i].error_code = static_cast<int16_t>(r.error_code());
        (*results)[i].error_message = r.error_message();
      }
    }
    kafka::AlterClientQuotasResponse resp;
    resp.entries = std::move(*results);
    respond(*req, resp);
  };
  if (sent.empty()) {
    answer(cluster::pb::ControllerResponse{});
    return;
  }
  const bool validate_only = body.validate_only;
  cluster_->request(std::move(creq), std::chrono::seconds(10),
                    [answer, validate_only, n = sent.size()](cluster::pb::ControllerResponse r) {
                      if (r.error_code() == 0 && !validate_only) {
                        spdlog::info("client quotas changed for {} entit{}", n,
                                     n == 1 ? "y" : "ies");
                      }
                      answer(r);
                    });
}

}  // namespace sluice::broker
