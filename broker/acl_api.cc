// ACLs on the broker: DescribeAcls, CreateAcls and DeleteAcls (the bindings live in the
// controller's metadata, cluster/acl.h), the authorizer built from each new image, and the
// checks of the group APIs and of the APIs that act on the whole cluster. The per-topic checks
// of Produce, Fetch, Metadata and the topic admin APIs are in their handlers.
// docs/security.md "ACLs" lists which operation each API needs.
#include <spdlog/spdlog.h>

#include "broker/broker.h"
#include "broker/kafka_errors.h"
#include "broker/session.h"

namespace sluice::broker {

using cluster::acl::Operation;
using cluster::acl::ResourceType;
using kafka::ErrorCode;
namespace acl = cluster::acl;

namespace {

// The client's address without its port ("127.0.0.1", "::1"), as ACL hosts name it.
std::string peer_host(const std::string& peer) {
  std::string h = peer.substr(0, peer.rfind(':'));
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  return h;
}

const std::string kAnonymous = "User:ANONYMOUS";

const std::string& principal_of(const ConnectionInfo& conn) {
  return conn.session ? conn.session->principal : kAnonymous;
}

cluster::pb::AclFilter to_filter(int8_t type, const std::optional<std::string>& name,
                                 int8_t pattern, const std::optional<std::string>& principal,
                                 const std::optional<std::string>& host, int8_t op, int8_t perm) {
  cluster::pb::AclFilter f;
  f.set_resource_type(type);
  if (name) f.set_resource_name(*name);
  f.set_pattern_type(pattern);
  if (principal) f.set_principal(*principal);
  if (host) f.set_host(*host);
  f.set_operation(op);
  f.set_permission(perm);
  return f;
}

int8_t i8(int32_t v) { return static_cast<int8_t>(v); }

}  // namespace

std::shared_ptr<const acl::Authorizer> Broker::authorizer() const {
  std::lock_guard lock(authorizer_mutex_);
  return authorizer_;
}

void Broker::set_acls(const cluster::pb::Image& image) {
  acl::Options options;
  options.enabled = config_.authorizer_enabled;
  options.allow_if_no_acl = config_.allow_everyone_if_no_acl;
  options.super_users.insert(config_.super_users.begin(), config_.super_users.end());
  auto next = std::make_shared<const acl::Authorizer>(std::move(options), image.acls());
  std::lock_guard lock(authorizer_mutex_);
  if (authorizer_ && image.applied_index() < authorizer_index_) return;  // an older image
  if (authorizer_ && authorizer_->size() != next->size()) {
    spdlog::info("ACLs: {} bindings", next->size());
  }
  authorizer_ = std::move(next);
  authorizer_index_ = image.applied_index();
}

bool Broker::allowed(const Request& req, const acl::Authorizer& authz, Operation op,
                     ResourceType type, std::string_view name) const {
  if (!authz.enabled()) return true;
  const std::string& principal = principal_of(req.conn);
  const bool ok = authz.allowed(principal, peer_host(req.conn.peer), op, type, name);
  if (!ok) {
    spdlog::debug("ACL: {} from {} may not {} {} '{}' (API key {})", principal, req.conn.peer,
                  acl::name(op), acl::name(type), name, req.header.api_key);
  }
  return ok;
}

bool Broker::allowed(const Request& req, Operation op, ResourceType type,
                     std::string_view name) const {
  auto authz = authorizer();
  return !authz || allowed(req, *authz, op, type, name);
}

// --- DescribeAcls, CreateAcls, DeleteAcls ---------------------------------------------------

void Broker::handle_describe_acls(std::shared_ptr<Request> req,
                                  const kafka::DescribeAclsRequest& body) {
  kafka::DescribeAclsResponse resp;
  if (!allowed(*req, Operation::kDescribe, ResourceType::kCluster, acl::kClusterName)) {
    resp.error_code = code(ErrorCode::kClusterAuthorizationFailed);
    resp.error_message = "DESCRIBE on the cluster is needed to list ACLs";
    respond(*req, resp);
    return;
  }
  const auto filter =
      to_filter(body.resource_type_filter, body.resource_name_filter, body.pattern_type_filter,
                body.principal_filter, body.host_filter, body.operation, body.permission_type);
  if (std::string why = acl::validate(filter); !why.empty()) {
    resp.error_code = code(ErrorCode::kInvalidRequest);
    resp.error_message = why;
    respond(*req, resp);
    return;
  }
  auto image = cluster_->image();
  // Grouped by resource (type, name, pattern), in the order the bindings were created.
  for (const auto& b : image->acls()) {
    if (!acl::matches(filter, b)) continue;
    if (req->header.api_version == 0 &&
        static_cast<acl::PatternType>(b.pattern_type()) != acl::PatternType::kLiteral) {
      continue;  // v0 has no pattern type: it cannot describe PREFIXED bindings
    }
    auto it = std::find_if(resp.resources.begin(), resp.resources.end(), [&](const auto& r) {
      return r.resource_type == b.resource_type() && r.resource_name == b.resource_name() &&
             r.pattern_type == b.pattern_type();
    });
    if (it == resp.resources.end()) {
      kafka::DescribeAclsResponse::DescribeAclsResource r;
      r.resource_type = i8(b.resource_type());
      r.resource_name = b.resource_name();
      r.pattern_type = i8(b.pattern_type());
      resp.resources.push_back(std::move(r));
      it = resp.resources.end() - 1;
    }
    it->acls.push_back({b.principal(), b.host(), i8(b.operation()), i8(b.permission())});
  }
  respond(*req, resp);
}

void Broker::handle_create_acls(std::shared_ptr<Request> req,
                                const kafka::CreateAclsRequest& body) {
  auto resp = std::make_shared<kafka::CreateAclsResponse>();
  resp->results.resize(body.creations.size());
  if (!allowed(*req, Operation::kAlter, ResourceType::kCluster, acl::kClusterName)) {
    for (auto& r : resp->results) {
      r.error_code = code(ErrorCode::kClusterAuthorizationFailed);
      r.error_message = "ALTER on the cluster is needed to create ACLs";
    }
    respond(*req, *resp);
    return;
  }
  cluster::pb::ControllerRequest creq;
  std::vector<size_t> sent;  // result index of each binding sent
  for (size_t i = 0; i < body.creations.size(); ++i) {
    const auto& c = body.creations[i];
    cluster::pb::AclBinding b;
    b.set_resource_type(c.resource_type);
    b.set_resource_name(c.resource_name);
    b.set_pattern_type(c.resource_pattern_type);
    b.set_principal(c.principal);
    b.set_host(c.host);
    b.set_operation(c.operation);
    b.set_permission(c.permission_type);
    if (std::string why = acl::validate(b); !why.empty()) {
      resp->results[i].error_code = code(ErrorCode::kInvalidRequest);
      resp->results[i].error_message = why;
      continue;
    }
    *creq.mutable_create_acls()->add_acls() = std::move(b);
    sent.push_back(i);
  }
  if (sent.empty()) {
    respond(*req, *resp);
    return;
  }
  const std::string who = principal_of(req->conn);
  cluster_->request(std::move(creq), std::chrono::seconds(10),
                    [req, resp, sent, who](cluster::pb::ControllerResponse r) {
                      for (size_t i : sent) {
                        resp->results[i].error_code = static_cast<int16_t>(r.error_code());
                        if (r.error_code() != 0) resp->results[i].error_message = r.error_message();
                      }
                      if (r.error_code() == 0) {
                        spdlog::info("ACLs: {} created {} binding(s)", who, sent.size());
                      }
                      respond(*req, *resp);
                    });
}

void Broker::handle_delete_acls(std::shared_ptr<Request> req,
                                const kafka::DeleteAclsRequest& body) {
  auto resp = std::make_shared<kafka::DeleteAclsResponse>();
  resp->filter_results.resize(body.filters.size());
  if (!allowed(*req, Operation::kAlter, ResourceType::kCluster, acl::kClusterName)) {
    for (auto& r : resp->filter_results) {
      r.error_code = code(ErrorCode::kClusterAuthorizationFailed);
      r.error_message = "ALTER on the cluster is needed to delete ACLs";
    }
    respond(*req, *resp);
    return;
  }
  auto filters = std::make_shared<std::vector<std::pair<size_t, cluster::pb::AclFilter>>>();
  cluster::pb::ControllerRequest creq;
  for (size_t i = 0; i < body.filters.size(); ++i) {
    const auto& f = body.filters[i];
    auto filter = to_filter(f.resource_type_filter, f.resource_name_filter, f.pattern_type_filter,
                            f.principal_filter, f.host_filter, f.operation, f.permission_type);
    if (std::string why = acl::validate(filter); !why.empty()) {
      resp->filter_results[i].error_code = code(ErrorCode::kInvalidRequest);
      resp->filter_results[i].error_message = why;
      continue;
    }
    *creq.mutable_delete_acls()->add_filters() = filter;
    filters->emplace_back(i, std::move(filter));
  }
  if (filters->empty()) {
    respond(*req, *resp);
    return;
  }
  const std::string who = principal_of(req->conn);
  cluster_->request(
      std::move(creq), std::chrono::seconds(10),
      [req, resp, filters, who](cluster::pb::ControllerResponse r) {
        for (const auto& [i, f] : *filters) {
          auto& out = resp->filter_results[i];
          if (r.error_code() != 0) {
            out.error_code = static_cast<int16_t>(r.error_code());
            out.error_message = r.error_message();
            continue;
          }
          for (const auto& b : r.acls()) {
            if (!acl::matches(f, b)) continue;
            kafka::DeleteAclsResponse::DeleteAclsMatchingAcl m;
            m.resource_type = i8(b.resource_type());
            m.resource_name = b.resource_name();
            m.pattern_type = i8(b.pattern_type());
            m.principal = b.principal();
            m.host = b.host();
            m.operation = i8(b.operation());
            m.permission_type = i8(b.permission());
            out.matching_acls.push_back(std::move(m));
          }
        }
        if (r.error_code() == 0 && r.acls_size() > 0) {
          spdlog::info("ACLs: {} deleted {} binding(s)", who, r.acls_size());
        }
        respond(*req, *resp);
      });
}

// --- Whole-request checks --------------------------------------------------------------------

namespace {

template <class Resp>
void refuse_cluster(Resp& resp) {
  if constexpr (requires { resp.error_code; }) {
    resp.error_code = code(ErrorCode::kClusterAuthorizationFailed);
  }
  if constexpr (requires { resp.error_message; }) {
    resp.error_message = "not authorized on the cluster";
  }
}

}  // namespace

bool Broker::authorize_request(const std::shared_ptr<Request>& req,
                               const kafka::RequestBody& body) {
  auto authz = authorizer();
  if (!authz || !authz->enabled()) return true;
  auto check = [&](Operation op, auto resp) {
    if (allowed(*req, *authz, op, ResourceType::kCluster, acl::kClusterName)) return true;
    refuse_cluster(resp);
    respond(*req, resp);
    return false;
  };
  return std::visit(
      [&](const auto& b) {
        using T = std::decay_t<decltype(b)>;
        if constexpr (std::is_same_v<T, kafka::DescribeClusterRequest>) {
          return check(Operation::kDescribe, kafka::DescribeClusterResponse{});
        } else if constexpr (std::is_same_v<T, kafka::DescribeQuorumRequest>) {
          return check(Operation::kDescribe, kafka::DescribeQuorumResponse{});
        } else if constexpr (std::is_same_v<T, kafka::ListPartitionReassignmentsRequest>) {
          return check(Operation::kDescribe, kafka::ListPartitionReassignmentsResponse{});
        } else if constexpr (std::is_same_v<T, kafka::DescribeLogDirsRequest>) {
          return check(Operation::kDescribe, kafka::DescribeLogDirsResponse{});
        } else if constexpr (std::is_same_v<T, kafka::AlterPartitionReassignmentsRequest>) {
          return check(Operation::kAlter, kafka::AlterPartitionReassignmentsResponse{});
        } else if constexpr (std::is_same_v<T, kafka::ElectLeadersRequest>) {
          return check(Operation::kAlter, kafka::ElectLeadersResponse{});
        } else if constexpr (std::is_same_v<T, kafka::InitProducerIdRequest>) {
          if (b.transactional_id && !b.transactional_id->empty()) return true;  // broker_txn.cc
          // Kafka: IDEMPOTENT_WRITE on the cluster, or WRITE on some topic.
          if (allowed(*req, *authz, Operation::kIdempotentWrite, ResourceType::kCluster,
                      acl::kClusterName) ||
              authz->allowed_any(principal_of(req->conn), peer_host(req->conn.peer),
                                 Operation::kWrite, ResourceType::kTopic)) {
            return true;
          }
          kafka::InitProducerIdResponse resp;
          resp.error_code = code(ErrorCode::kClusterAuthorizationFailed);
          respond(*req, resp);
          return false;
        } else {
          return true;
        }
      },
      body);
}

// --- Groups ----------------------------------------------------------------------------------

template <class Body>
std::optional<Broker::GroupDenied> Broker::authorize_group(const Request& req, Body& body) {
  GroupDenied denied;
  auto authz = authorizer();
  if (!authz || !authz->enabled()) return denied;
  auto group_ok = [&](Operation op, const std::string& group) {
    return allowed(req, *authz, op, ResourceType::kGroup, group);
  };
  auto topic_ok = [&](Operation op, const std::string& topic) {
    return allowed(req, *authz, op, ResourceType::kTopic, topic);
  };
  // Takes the topics the principal may not `op` out of `topics`, into denied.topics.
  auto strip = [&](Operation op, auto& topics, auto partitions_of) {
    std::erase_if(topics, [&](const auto& t) {
      if (topic_ok(op, t.name)) return false;
      denied.topics.emplace_back(t.name, partitions_of(t));
      return true;
    });
  };
  auto refuse = [&](auto resp) {
    resp.error_code = code(ErrorCode::kGroupAuthorizationFailed);
    respond(req, resp);
    return std::nullopt;
  };
  if constexpr (std::is_same_v<Body, kafka::FindCoordinatorRequest>) {
    const bool txn = body.key_type == 1;
    if (!allowed(req, *authz, Operation::kDescribe,
                 txn ? ResourceType::kTransactionalId : ResourceType::kGroup, body.key)) {
      kafka::FindCoordinatorResponse resp;
      resp.error_code = code(txn ? ErrorCode::kTransactionalIdAuthorizationFailed
                                 : ErrorCode::kGroupAuthorizationFailed);
      resp.node_id = -1;
      respond(req, resp);
      return std::nullopt;
    }
  } else if constexpr (std::is_same_v<Body, kafka::JoinGroupRequest>) {
    if (!group_ok(Operation::kRead, body.group_id)) return refuse(kafka::JoinGroupResponse{});
  } else if constexpr (std::is_same_v<Body, kafka::SyncGroupRequest>) {
    if (!group_ok(Operation::kRead, body.group_id)) return refuse(kafka::SyncGroupResponse{});
  } else if constexpr (std::is_same_v<Body, kafka::HeartbeatRequest>) {
    if (!group_ok(Operation::kRead, body.group_id)) return refuse(kafka::HeartbeatResponse{});
  } else if constexpr (std::is_same_v<Body, kafka::LeaveGroupRequest>) {
    if (!group_ok(Operation::kRead, body.group_id)) return refuse(kafka::LeaveGroupResponse{});
  } else if constexpr (std::is_same_v<Body, kafka::OffsetCommitRequest>) {
    auto parts = [](const auto& t) {
      std::vector<int32_t> out;
      for (const auto& p : t.partitions) out.push_back(p.partition_index);
      return out;
    };
    if (!group_ok(Operation::kRead, body.group_id)) {
      kafka::OffsetCommitResponse resp;
      for (const auto& t : body.topics) {
        auto& rt = resp.topics.emplace_back();
        rt.name = t.name;
        for (int32_t p : parts(t)) {
          rt.partitions.push_back({p, code(ErrorCode::kGroupAuthorizationFailed)});
        }
      }
      respond(req, resp);
      return std::nullopt;
    }
    strip(Operation::kRead, body.topics, parts);
  } else if constexpr (std::is_same_v<Body, kafka::TxnOffsetCommitRequest>) {
    // Kafka: WRITE on the transactional id, READ on the group, READ on each topic.
    auto parts = [](const auto& t) {
      std::vector<int32_t> out;
      for (const auto& p : t.partitions) out.push_back(p.partition_index);
      return out;
    };
    const bool txn_ok = allowed(req, *authz, Operation::kWrite, ResourceType::kTransactionalId,
                                body.transactional_id);
    if (!txn_ok || !group_ok(Operation::kRead, body.group_id)) {
      const int16_t e = code(txn_ok ? ErrorCode::kGroupAuthorizationFailed
                                    : ErrorCode::kTransactionalIdAuthorizationFailed);
      kafka::TxnOffsetCommitResponse resp;
      for (const auto& t : body.topics) {
        auto& rt = resp.topics.emplace_back();
        rt.name = t.name;
        for (int32_t p : parts(t)) rt.partitions.push_back({p, e});
      }
      respond(req, resp);
      return std::nullopt;
    }
    strip(Operation::kRead, body.topics, parts);
  } else if constexpr (std::is_same_v<Body, kafka::OffsetFetchRequest>) {
    if (!group_ok(Operation::kDescribe, body.group_id)) {
      kafka::OffsetFetchResponse resp;
      resp.error_code = code(ErrorCode::kGroupAuthorizationFailed);
      if (body.topics) {  // v0-1 carry the error per partition
        for (const auto& t : *body.topics) {
          auto& rt = resp.topics.emplace_back();
          rt.name = t.name;
          for (int32_t p : t.partition_indexes) {
            auto& rp = rt.partitions.emplace_back();
            rp.partition_index = p;
            rp.committed_offset = -1;
            rp.error_code = code(ErrorCode::kGroupAuthorizationFailed);
          }
        }
      }
      respond(req, resp);
      return std::nullopt;
    }
    if (body.topics) {
      strip(Operation::kDescribe, *body.topics, [](const auto& t) { return t.partition_indexes; });
    } else {
      denied.filter = true;
    }
  } else if constexpr (std::is_same_v<Body, kafka::OffsetDeleteRequest>) {
    if (!group_ok(Operation::kDelete, body.group_id)) return refuse(kafka::OffsetDeleteResponse{});
    strip(Operation::kRead, body.topics, [](const auto& t) {
      std::vector<int32_t> out;
      for (const auto& p : t.partitions) out.push_back(p.partition_index);
      return out;
    });
  } else if constexpr (std::is_same_v<Body, kafka::ListGroupsRequest>) {
    denied.filter = !allowed(req, *authz, Operation::kDescribe, ResourceType::kCluster,
                             acl::kClusterName);
  } else if constexpr (std::is_same_v<Body, kafka::DescribeGroupsRequest>) {
    std::erase_if(body.groups, [&](const std::string& g) {
      if (group_ok(Operation::kDescribe, g)) return false;
      denied.groups.push_back(g);
      return true;
    });
  } else if constexpr (std::is_same_v<Body, kafka::DeleteGroupsRequest>) {
    std::erase_if(body.groups_names, [&](const std::string& g) {
      if (group_ok(Operation::kDelete, g)) return false;
      denied.groups.push_back(g);
      return true;
    });
  }
  return denied;
}

template <class Resp>
void Broker::add_denied(const Request& req, const GroupDenied& denied, Resp& resp) {
  const int16_t topic_denied = code(ErrorCode::kTopicAuthorizationFailed);
  const int16_t group_denied = code(ErrorCode::kGroupAuthorizationFailed);
  if constexpr (std::is_same_v<Resp, kafka::OffsetCommitResponse> ||
                std::is_same_v<Resp, kafka::OffsetDeleteResponse> ||
                std::is_same_v<Resp, kafka::TxnOffsetCommitResponse>) {
    for (const auto& [name, parts] : denied.topics) {
      auto& t = resp.topics.emplace_back();
      t.name = name;
      for (int32_t p : parts) t.partitions.push_back({p, topic_denied});
    }
  } else if constexpr (std::is_same_v<Resp, kafka::OffsetFetchResponse>) {
    if (denied.filter) {
      std::erase_if(resp.topics,
                    [&](const auto& t) { return !allowed(req, Operation::kDescribe,
                                                         ResourceType::kTopic, t.name); });
    }
    for (const auto& [name, parts] : denied.topics) {
      auto& t = resp.topics.emplace_back();
      t.name = name;
      for (int32_t p : parts) {
        auto& rp = t.partitions.emplace_back();
        rp.partition_index = p;
        rp.committed_offset = -1;
        rp.error_code = topic_denied;
      }
    }
  } else if constexpr (std::is_same_v<Resp, kafka::ListGroupsResponse>) {
    if (denied.filter) {
      std::erase_if(resp.groups, [&](const auto& g) {
        return !allowed(req, Operation::kDescribe, ResourceType::kGroup, g.group_id);
      });
    }
  } else if constexpr (std::is_same_v<Resp, kafka::DescribeGroupsResponse>) {
    for (const auto& g : denied.groups) {
      auto& d = resp.groups.emplace_back();
      d.group_id = g;
      d.error_code = group_denied;
    }
  } else if constexpr (std::is_same_v<Resp, kafka::DeleteGroupsResponse>) {
    for (const auto& g : denied.groups) resp.results.push_back({g, group_denied});
  } else {
    (void)req;
    (void)denied;
    (void)resp;
    (void)topic_denied;
    (void)group_denied;
  }
}

#define SLUICE_GROUP_API(Req, Resp)                                                          \
  template std::optional<Broker::GroupDenied> Broker::authorize_group<kafka::Req>(           \
      const Request&, kafka::Req&);                                                          \
  template void Broker::add_denied<kafka::Resp>(const Request&, const GroupDenied&, kafka::Resp&);
SLUICE_GROUP_API(FindCoordinatorRequest, FindCoordinatorResponse)
SLUICE_GROUP_API(JoinGroupRequest, JoinGroupResponse)
SLUICE_GROUP_API(SyncGroupRequest, SyncGroupResponse)
SLUICE_GROUP_API(HeartbeatRequest, HeartbeatResponse)
SLUICE_GROUP_API(LeaveGroupRequest, LeaveGroupResponse)
SLUICE_GROUP_API(OffsetCommitRequest, OffsetCommitResponse)
SLUICE_GROUP_API(OffsetFetchRequest, OffsetFetchResponse)
SLUICE_GROUP_API(TxnOffsetCommitRequest, TxnOffsetCommitResponse)
SLUICE_GROUP_API(ListGroupsRequest, ListGroupsResponse)
SLUICE_GROUP_API(DescribeGroupsRequest, DescribeGroupsResponse)
SLUICE_GROUP_API(DeleteGroupsRequest, DeleteGroupsResponse)
SLUICE_GROUP_API(OffsetDeleteRequest, OffsetDeleteResponse)
#undef SLUICE_GROUP_API

}  // namespace sluice::broker
