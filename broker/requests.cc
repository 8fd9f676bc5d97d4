// Request decoding and dispatch, and the handlers for cluster and topic administration:
// ApiVersions, Metadata, CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs,
// AlterConfigs, IncrementalAlterConfigs (moves and leader elections: reassign_api.cc).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>

#include "broker/broker.h"
#include "broker/kafka_errors.h"
#include "broker/legacy.h"
#include "broker/topic_config.h"

namespace sluice::broker {

using cluster::acl::Operation;
using cluster::acl::ResourceType;
using kafka::ApiKey;
using kafka::ErrorCode;

namespace {

struct Served {
  ApiKey key;
  int16_t min;
  int16_t max;
};
template <class Req>
constexpr Served served() {
  return {Req::kApiKey, Req::kMinVersion, Req::kMaxVersion};
}

// The single list of what this broker serves: ApiVersions advertises exactly these.
constexpr Served kServed[] = {
    served<kafka::ProduceRequest>(),
    served<kafka::FetchRequest>(),
    served<kafka::ListOffsetsRequest>(),
    served<kafka::MetadataRequest>(),
    served<kafka::ApiVersionsRequest>(),
    served<kafka::CreateTopicsRequest>(),
    served<kafka::DeleteTopicsRequest>(),
    served<kafka::DeleteRecordsRequest>(),
    served<kafka::InitProducerIdRequest>(),
    served<kafka::WriteTxnMarkersRequest>(),
    // Transactions (broker_txn.cc, txn_coordinator.h; TxnOffsetCommit: the group coordinator).
    served<kafka::AddPartitionsToTxnRequest>(),
    served<kafka::AddOffsetsToTxnRequest>(),
    served<kafka::EndTxnRequest>(),
    served<kafka::TxnOffsetCommitRequest>(),
    served<kafka::ListTransactionsRequest>(),
    served<kafka::DescribeTransactionsRequest>(),
    served<kafka::DescribeProducersRequest>(),
    served<kafka::OffsetForLeaderEpochRequest>(),
    served<kafka::DescribeConfigsRequest>(),
    served<kafka::AlterConfigsRequest>(),
    served<kafka::CreatePartitionsRequest>(),
    served<kafka::IncrementalAlterConfigsRequest>(),
    served<kafka::DescribeClusterRequest>(),
    served<kafka::DescribeQuorumRequest>(),
    // Moves and leader elections (reassign_api.cc).
    served<kafka::AlterPartitionReassignmentsRequest>(),
    served<kafka::ListPartitionReassignmentsRequest>(),
    served<kafka::ElectLeadersRequest>(),
    served<kafka::DescribeLogDirsRequest>(),
    // Consumer groups (group_coordinator.h).
    served<kafka::FindCoordinatorRequest>(),
    served<kafka::JoinGroupRequest>(),
    served<kafka::SyncGroupRequest>(),
    served<kafka::HeartbeatRequest>(),
    served<kafka::LeaveGroupRequest>(),
    served<kafka::OffsetCommitRequest>(),
    served<kafka::OffsetFetchRequest>(),
    served<kafka::ListGroupsRequest>(),
    served<kafka::DescribeGroupsRequest>(),
    served<kafka::DeleteGroupsRequest>(),
    served<kafka::OffsetDeleteRequest>(),
    // Security (security.cc).
    served<kafka::SaslHandshakeRequest>(),
    served<kafka::SaslAuthenticateRequest>(),
    // ACLs (acl_api.cc).
    served<kafka::DescribeAclsRequest>(),
    served<kafka::CreateAclsRequest>(),
    served<kafka::DeleteAclsRequest>(),
    // SCRAM credentials (users_api.cc).
    served<kafka::DescribeUserScramCredentialsRequest>(),
    served<kafka::AlterUserScramCredentialsRequest>(),
    // Client quotas (quotas_api.cc).
    served<kafka::DescribeClientQuotasRequest>(),
    served<kafka::AlterClientQuotasRequest>(),
};

const Served* find_served(int16_t key) {
  for (const Served& s : kServed) {
    if (static_cast<int16_t>(s.key) == key) return &s;
  }
  return nullptr;
}

constexpr int8_t kResourceTopic = 2;
constexpr int8_t kResourceBroker = 4;
// Kafka's message for THROTTLING_QUOTA_EXCEEDED (Errors.THROTTLING_QUOTA_EXCEEDED).
constexpr const char* kThrottlingQuotaMessage = "The throttling quota has been exceeded.";

}  // namespace

void Broker::handle(const ConnectionInfo& conn, RequestFrame frame, Done done) {
  const auto start = std::chrono::steady_clock::now();
  if (handle_raw_sasl(conn, frame, done)) return;  // bare tokens after SaslHandshake v0
  kafka::Reader reader(frame.bytes());
  auto header = kafka::decode_request_header(reader);
  if (!header) {
    spdlog::warn("connection {} from {}: closing, bad request header: {}", conn.id, conn.peer,
                 header.error().to_string());
    count_request(conn.shard, -1, -1, true, start);
    done(Reply::close());
    return;
  }
  if (kafka::needs_api_versions_fallback(*header)) {
    count_request(conn.shard, header->api_key, header->api_version, true, start);
    done(Reply{Reply::Kind::kFrame,
               OutFrame{kafka::api_versions_unsupported_response(header->correlation_id), {}}});
    return;
  }
  const Served* s = find_served(header->api_key);
  if (!s || header->api_version < s->min || header->api_version > s->max) {
    // Rate-limited per client: an old client reconnects and retries many times a second.
    warn_not_served(conn, header->client_id, header->api_key, header->api_version);
    // Counted as unknown: an unserved key or version has no counter of its own.
    count_request(conn.shard, -1, -1, true, start);
    done(Reply::close());
    return;
  }
  auto body = kafka::decode_request(static_cast<ApiKey>(header->api_key), header->api_version,
                                    reader.rest());
  if (!body) {
    spdlog::warn("connection {} from {} ({}): closing, malformed request (key {} v{}): {}", conn.id,
                 conn.peer, header->client_id, header->api_key, header->api_version,
                 body.error().to_string());
    count_request(conn.shard, header->api_key, header->api_version, true, start);
    done(Reply::close());
    return;
  }
  if (handle_security(conn, *header, *body, done)) {  // SASL, and nothing before it
    count_request(conn.shard, header->api_key, header->api_version, false, start);
    return;
  }
  auto req = std::make_shared<Request>(
      Request{conn, std::move(frame), std::move(*header), nullptr, false, Reply::kNoShard});
  // The request is alive while its `done` runs (handlers call req->done), so `raw` is valid.
  const Request* raw = req.get();
  req->done = [this, raw, start, inner = std::move(done)](Reply reply) {
    count_request(raw->conn.shard, raw->header.api_key, raw->header.api_version,
                  raw->errored || reply.kind == Reply::Kind::kClose, start);
    reply.affinity = raw->affinity;
    inner(std::move(reply));
  };
  dispatch(std::move(req), std::move(*body));
}

void Broker::dispatch(std::shared_ptr<Request> req, kafka::RequestBody body) {
  if (!authorize_request(req, body)) return;  // refused on the cluster (acl_api.cc)
  std::visit(
      [&](auto& b) {
        using T = std::decay_t<decltype(b)>;
        if constexpr (std::is_same_v<T, kafka::ApiVersionsRequest>) {
          handle_api_versions(req, b);
        } else if constexpr (std::is_same_v<T, kafka::MetadataRequest>) {
          handle_metadata(req, b);
        } else if constexpr (std::is_same_v<T, kafka::CreateTopicsRequest>) {
          handle_create_topics(req, b);
        } else if constexpr (std::is_same_v<T, kafka::DeleteTopicsRequest>) {
          handle_delete_topics(req, b);
        } else if constexpr (std::is_same_v<T, kafka::CreatePartitionsRequest>) {
          handle_create_partitions(req, b);
        } else if constexpr (std::is_same_v<T, kafka::DescribeConfigsRequest>) {
          handle_describe_configs(req, b);
        } else if constexpr (std::is_same_v<T, kafka::AlterConfigsRequest>) {
          handle_alter_configs(req, b);
        } else if constexpr (std::is_same_v<T, kafka::IncrementalAlterConfigsRequest>) {
          handle_incremental_alter_configs(req, b);
        } else if constexpr (std::is_same_v<T, kafka::DescribeQuorumRequest>) {
          handle_describe_quorum(req, b);
        } else if constexpr (std::is_same_v<T, kafka::DescribeClusterRequest>) {
          handle_describe_cluster(req, b);
        } else if constexpr (std::is_same_v<T, kafka::AlterPartitionReassignmentsRequest>) {
          handle_alter_partition_reassignments(req, b);
        } else if constexpr (std::is_same_v<T, kafka::ListPartitionReassignmentsRequest>) {
          handle_list_partition_reassignments(req, b);
        } else if constexpr (std::is_same_v<T, kafka::ElectLeadersRequest>) {
          handle_elect_leaders(req, b);
        } else if constexpr (std::is_same_v<T, kafka::DescribeLogDirsRequest>) {
          handle_describe_log_dirs(req, b);
        } else if constexpr (std::is_same_v<T, kafka::DescribeUserScramCredentialsRequest>) {
          handle_describe_user_scram_credentials(req, b);
        } else if constexpr (std::is_same_v<T, kafka::AlterUserScramCredentialsRequest>) {
          handle_alter_user_scram_credentials(req, b);
        } else if constexpr (std::is_same_v<T, kafka::DescribeClientQuotasRequest>) {
          handle_describe_client_quotas(req, b);
        } else if constexpr (std::is_same_v<T, kafka::AlterClientQuotasRequest>) {
          handle_alter_client_quotas(req, b);
        } else if constexpr (std::is_same_v<T, kafka::DescribeAclsRequest>) {
          handle_describe_acls(req, b);
        } else if constexpr (std::is_same_v<T, kafka::CreateAclsRequest>) {
          handle_create_acls(req, b);
        } else if constexpr (std::is_same_v<T, kafka::DeleteAclsRequest>) {
          handle_delete_acls(req, b);
        } else if constexpr (std::is_same_v<T, kafka::ProduceRequest>) {
          handle_produce(req, std::move(b));
        } else if constexpr (std::is_same_v<T, kafka::FetchRequest>) {
          handle_fetch(req, std::move(b));
        } else if constexpr (std::is_same_v<T, kafka::ListOffsetsRequest>) {
          handle_list_offsets(req, b);
        } else if constexpr (std::is_same_v<T, kafka::DeleteRecordsRequest>) {
          handle_delete_records(req, b);
        } else if constexpr (std::is_same_v<T, kafka::InitProducerIdRequest>) {
          handle_init_producer_id(req, b);
        } else if constexpr (std::is_same_v<T, kafka::WriteTxnMarkersRequest>) {
          handle_write_txn_markers(req, b);
        } else if constexpr (std::is_same_v<T, kafka::OffsetForLeaderEpochRequest>) {
          handle_offset_for_leader_epoch(req, b);
        } else if constexpr (std::is_same_v<T, kafka::AddPartitionsToTxnRequest>) {
          handle_add_partitions_to_txn(req, b);
        } else if constexpr (std::is_same_v<T, kafka::AddOffsetsToTxnRequest>) {
          handle_add_offsets_to_txn(req, b);
        } else if constexpr (std::is_same_v<T, kafka::EndTxnRequest>) {
          handle_end_txn(req, b);
        } else if constexpr (std::is_same_v<T, kafka::ListTransactionsRequest>) {
          handle_list_transactions(req, b);
        } else if constexpr (std::is_same_v<T, kafka::DescribeTransactionsRequest>) {
          handle_describe_transactions(req, b);
        } else if constexpr (std::is_same_v<T, kafka::DescribeProducersRequest>) {
          handle_describe_producers(req, b);
        } else if constexpr (std::is_same_v<T, kafka::FindCoordinatorRequest>) {
          if (b.key_type == 1) {
            handle_find_txn_coordinator(req, b);
          } else {
            handle_group(req, b);
          }
        } else if constexpr (std::is_same_v<T, kafka::TxnOffsetCommitRequest> ||
                             std::is_same_v<T, kafka::JoinGroupRequest> ||
                             std::is_same_v<T, kafka::SyncGroupRequest> ||
                             std::is_same_v<T, kafka::HeartbeatRequest> ||
                             std::is_same_v<T, kafka::LeaveGroupRequest> ||
                             std::is_same_v<T, kafka::OffsetCommitRequest> ||
                             std::is_same_v<T, kafka::OffsetFetchRequest> ||
                             std::is_same_v<T, kafka::ListGroupsRequest> ||
                             std::is_same_v<T, kafka::DescribeGroupsRequest> ||
                             std::is_same_v<T, kafka::DeleteGroupsRequest> ||
                             std::is_same_v<T, kafka::OffsetDeleteRequest>) {
          handle_group(req, b);
        } else {
          // find_served() admitted it, so a handler must exist: a missing one is a bug.
          SLUICE_UNREACHABLE();
        }
      },
      body);
}

int16_t Broker::config_denied(const Request& req, int8_t resource_type, const std::string& name,
                              bool alter) const {
  const auto op = alter ? Operation::kAlterConfigs : Operation::kDescribeConfigs;
  if (resource_type == 2) {
    return allowed(req, op, ResourceType::kTopic, name)
               ? int16_t{0}
               : code(ErrorCode::kTopicAuthorizationFailed);
  }
  return allowed(req, op, ResourceType::kCluster, cluster::acl::kClusterName)
             ? int16_t{0}
             : code(ErrorCode::kClusterAuthorizationFailed);
}

void Broker::handle_api_versions(std::shared_ptr<Request> req, const kafka::ApiVersionsRequest&) {
  kafka::ApiVersionsResponse resp;
  std::vector<Served> list(std::begin(kServed), std::end(kServed));
  std::sort(list.begin(), list.end(),
            [](const Served& a, const Served& b) { return a.key < b.key; });
  for (const Served& s : list) {
    resp.api_keys.push_back({static_cast<int16_t>(s.key), s.min, s.max});
  }
  respond(*req, resp);
}

void Broker::handle_metadata(std::shared_ptr<Request> req, const kafka::MetadataRequest& body) {
  auto snap = registry_->snapshot();
  const int16_t version = req->header.api_version;
  const bool all = !body.topics || (version == 0 && body.topics->empty());
  std::vector<std::string> names;
  std::set<std::string> denied;  // named topics the principal may not DESCRIBE
  if (all) {
    // As Kafka: "all topics" are those the principal may DESCRIBE.
    for (const auto& [name, t] : snap->topics) {
      if (allowed(*req, Operation::kDescribe, ResourceType::kTopic, name)) names.push_back(name);
    }
  } else {
    for (const auto& t : *body.topics) {
      names.push_back(t.name);
      if (!allowed(*req, Operation::kDescribe, ResourceType::kTopic, t.name)) denied.insert(t.name);
    }
  }
  // Auto-create explicitly named topics that do not exist (never for "all topics").
  std::vector<std::string> to_create;
  const auto live = live_config();  // dynamic broker configs included
  if (!all && live->auto_create_topics && body.allow_auto_topic_creation) {
    std::set<std::string> seen;
    for (const auto& n : names) {
      if (!snap->find(n) && TopicRegistry::validate_name(n) && !denied.count(n) &&
          may_create_topic(*req, n) && seen.insert(n).second) {
        to_create.push_back(n);
      }
    }
  }
  auto answer = [this, req, names, all, denied]() {
    auto snap = registry_->snapshot();
    kafka::MetadataResponse resp;
    for (const auto& [id, b] : snap->brokers) {
      if (b.fenced) continue;  // Kafka lists live brokers only
      std::optional<std::string> rack;
      if (!b.rack.empty()) rack = b.rack;
      auto [host, port] = b.address(listener_name(req->conn));
      resp.brokers.push_back({id, host, port, rack});
    }
    resp.cluster_id = snap->cluster_id;
    // Every broker forwards admin requests to the controller quorum, so (as KRaft brokers do)
    // a broker names itself: a client never sends admin requests to a stale or dead leader.
    resp.controller_id = config_.node_id;
    for (const auto& name : names) {
      kafka::MetadataResponse::MetadataResponseTopic t;
      t.name = name;
      const TopicInfo* info = snap->find(name);
      if (denied.count(name)) {
        t.error_code = code(ErrorCode::kTopicAuthorizationFailed);
      } else if (!info) {
        auto valid = TopicRegistry::validate_name(name);
        t.error_code =
            code(valid ? ErrorCode::kUnknownTopicOrPartition : ErrorCode::kInvalidTopicException);
      } else {
        t.is_internal = info->internal || TopicRegistry::is_internal(name);
        for (int32_t i = 0; i < info->partitions; ++i) {
          const PartitionInfo& pi = info->parts[static_cast<size_t>(i)];
          kafka::MetadataResponse::MetadataResponsePartition p;
          p.partition_index = i;
          p.leader_id = pi.leader;
          p.leader_epoch = pi.leader_epoch;
          p.replica_nodes = pi.replicas;
          if (pi.leader < 0) p.error_code = code(ErrorCode::kLeaderNotAvailable);
          // In sync: as the leader last reported (voters caught up within
          // replica.lag.time.max.ms), less brokers that are down since; before a report,
          // the replicas whose brokers are live.
          for (int32_t r : pi.replicas) {
            auto b = snap->brokers.find(r);
            const bool live = b != snap->brokers.end() && !b->second.fenced;
            if (!live) {
              p.offline_replicas.push_back(r);
            } else if (pi.isr.empty() ||
                       std::find(pi.isr.begin(), pi.isr.end(), r) != pi.isr.end()) {
              p.isr_nodes.push_back(r);
            }
          }
          t.partitions.push_back(std::move(p));
        }
      }
      resp.topics.push_back(std::move(t));
    }
    (void)all;
    respond(*req, resp);
  };
  if (to_create.empty()) {
    answer();
    return;
  }
  auto left = std::make_shared<std::atomic<size_t>>(to_create.size());
  // One answer shared by every creation: a copy each (holding every name) was quadratic in
  // memory (2,500 names: +250 MiB).
  auto shared_answer = std::make_shared<decltype(answer)>(std::move(answer));
  for (const auto& name : to_create) {
    cluster::TopicChange change;
    change.name = name;
    change.partitions = live->num_partitions;
    change.replication_factor = live->default_replication_factor;
    create_topic(change, [left, shared_answer, name](Result<TopicInfo, TopicError> r) {
                   if (!r && r.error().code != ErrorCode::kTopicAlreadyExists) {
                     spdlog::warn("auto-creating topic '{}' failed: {}", name, r.error().message);
                   }
                   if (left->fetch_sub(1) == 1) (*shared_answer)();
                 });
  }
}

void Broker::handle_describe_cluster(std::shared_ptr<Request> req,
                                     const kafka::DescribeClusterRequest&) {
  auto snap = registry_->snapshot();
  kafka::DescribeClusterResponse resp;
  resp.cluster_id = snap->cluster_id;
  resp.controller_id = config_.node_id;  // see handle_metadata
  for (const auto& [id, b] : snap->brokers) {
    if (b.fenced) continue;
    std::optional<std::string> rack;
    if (!b.rack.empty()) rack = b.rack;
    auto [host, port] = b.address(listener_name(req->conn));
    resp.brokers.push_back({id, host, port, rack});
  }
  respond(*req, resp);
}

void Broker::handle_describe_quorum(std::shared_ptr<Request> req,
                                    const kafka::DescribeQuorumRequest& body) {
  // The controller quorum is KRaft's __cluster_metadata-0.
  const cluster::QuorumStatus st = cluster_->quorum_status();
  kafka::DescribeQuorumResponse resp;
  for (const auto& t : body.topics) {
    kafka::DescribeQuorumResponse::TopicData out;
    out.topic_name = t.topic_name;
    for (const auto& p : t.partitions) {
      kafka::DescribeQuorumResponse::PartitionData pd;
      pd.partition_index = p.partition_index;
      if (t.topic_name != "__cluster_metadata" || p.partition_index != 0) {
        pd.error_code = code(ErrorCode::kUnknownTopicOrPartition);
        pd.leader_id = -1;
      } else {
        pd.leader_id = st.leader;
        pd.leader_epoch = static_cast<int32_t>(st.term);
        pd.high_watermark = static_cast<int64_t>(st.commit);
        for (const auto& v : st.voters) pd.current_voters.push_back({v.id, v.log_end});
        for (const auto& o : st.observers) pd.observers.push_back({o.id, o.log_end});
      }
      out.partitions.push_back(std::move(pd));
    }
    resp.topics.push_back(std::move(out));
  }
  respond(*req, resp);
}

void Broker::handle_create_topics(std::shared_ptr<Request> req,
                                  const kafka::CreateTopicsRequest& body) {
  using Result_ = kafka::CreateTopicsResponse::CreatableTopicResult;
  auto resp = std::make_shared<kafka::CreateTopicsResponse>();
  resp->topics.resize(body.topics.size());
  std::map<std::string, int> counts;
  for (const auto& t : body.topics) counts[t.name]++;

  auto left = std::make_shared<std::atomic<size_t>>(body.topics.size() + 1);
  auto finish = [req, resp, left] {
    if (left->fetch_sub(1) == 1) respond(*req, *resp);
  };
  auto fail = [](Result_& r, ErrorCode c, std::string msg) {
    r.error_code = code(c);
    r.error_message = std::move(msg);
  };
  MutationQuota quota(*this, *req, req->header.api_version >= 6);
  for (size_t i = 0; i < body.topics.size(); ++i) {
    const auto& t = body.topics[i];
    Result_& r = resp->topics[i];
    r.name = t.name;
    int32_t partitions = t.num_partitions;
    int32_t rf = t.replication_factor;
    std::vector<std::vector<int32_t>> assignments;
    std::map<std::string, std::string> configs;
    for (const auto& c : t.configs) {
      if (c.value) configs[c.name] = *c.value;
    }
    if (!may_create_topic(*req, t.name)) {
      fail(r, ErrorCode::kTopicAuthorizationFailed,
           "CREATE on the cluster or on topic '" + t.name + "' is needed");
    } else if (counts[t.name] > 1) {
      fail(r, ErrorCode::kInvalidRequest, "topic '" + t.name + "' is named more than once");
    } else if (!t.assignments.empty() && (partitions != -1 || rf != -1)) {
      fail(r, ErrorCode::kInvalidRequest,
           "with replica assignments, numPartitions and replicationFactor must be -1");
    } else {
      if (!t.assignments.empty()) {
        partitions = static_cast<int32_t>(t.assignments.size());
        rf = static_cast<int32_t>(t.assignments.front().broker_ids.size());
        for (const auto& a : t.assignments) assignments.push_back(a.broker_ids);
      }
      if (partitions == -1) partitions = live_config()->num_partitions;
      if (rf == -1) rf = live_config()->default_replication_factor;
      if (r.error_code != 0) {
      } else if (auto v = TopicRegistry::validate_name(t.name); !v) {
        fail(r, v.error().code, v.error().message);
      } else if (partitions <= 0) {
        fail(r, ErrorCode::kInvalidPartitions, "number of partitions must be at least 1");
      } else if (rf <= 0 && rf != -1) {  // -1: the controller's default, min(3, brokers)
        // Against the live brokers the controller checks (this broker's view may lag).
        fail(r, ErrorCode::kInvalidReplicationFactor, "replication factor must be at least 1");
      } else if (auto c = validate_topic_configs(configs); !c) {
        fail(r, c.error().code, c.error().message);
      } else if (registry_->find(t.name)) {
        fail(r, ErrorCode::kTopicAlreadyExists, "topic '" + t.name + "' already exists");
      } else if (!body.validate_only && !quota.take(partitions)) {
        fail(r, ErrorCode::kThrottlingQuotaExceeded, kThrottlingQuotaMessage);
      }
    }
    r.num_partitions = r.error_code == 0 ? partitions : -1;
    r.replication_factor = r.error_code == 0 ? static_cast<int16_t>(rf) : int16_t{-1};
    if (r.error_code != 0) {
      finish();
      continue;
    }
    cluster::TopicChange change;
    change.name = t.name;
    change.partitions = partitions;
    change.replication_factor = rf;
    change.configs = configs;
    change.assignments = std::move(assignments);
    if (body.validate_only) {  // the controller checks it against its view, stores nothing
      registry_->create(change, true, [resp, i, finish, configs](Result<TopicInfo, TopicError> ok) {
        Result_& r = resp->topics[i];
        if (!ok) {
          r.error_code = code(ok.error().code);
          r.error_message = ok.error().message;
          r.num_partitions = -1;
          r.replication_factor = -1;
        } else {
          r.configs.emplace();
          for (const auto& [k, v] : configs)
            r.configs->push_back({k, v, false, kSourceTopicConfig, false});
        }
        finish();
      });
      continue;
    }
    create_topic(std::move(change), [resp, i, finish, refund = quota.refund(partitions)](
                                        Result<TopicInfo, TopicError> created) {
      Result_& r = resp->topics[i];
      if (!created) {
        refund();
        r.error_code = code(created.error().code);
        r.error_message = created.error().message;
        r.num_partitions = -1;
        r.replication_factor = -1;
      } else {
        r.configs.emplace();
        for (const auto& [k, v] : created->configs) {
          r.configs->push_back({k, v, false, kSourceTopicConfig, false});
        }
      }
      finish();
    });
  }
  resp->throttle_time_ms = quota.finish();
  finish();
}

void Broker::handle_delete_topics(std::shared_ptr<Request> req,
                                  const kafka::DeleteTopicsRequest& body) {
  auto resp = std::make_shared<kafka::DeleteTopicsResponse>();
  resp->responses.resize(body.topic_names.size());
  auto left = std::make_shared<std::atomic<size_t>>(body.topic_names.size() + 1);
  auto finish = [req, resp, left] {
    if (left->fetch_sub(1) == 1) respond(*req, *resp);
  };
  MutationQuota quota(*this, *req, req->header.api_version >= 5);
  auto snap = registry_->snapshot();
  for (size_t i = 0; i < body.topic_names.size(); ++i) {
    const std::string& name = body.topic_names[i];
    resp->responses[i].name = name;
    if (!allowed(*req, Operation::kDelete, ResourceType::kTopic, name)) {
      resp->responses[i].error_code = code(ErrorCode::kTopicAuthorizationFailed);
      finish();
      continue;
    }
    const TopicInfo* topic = snap->find(name);
    const int32_t partitions = topic ? topic->partitions : 0;
    if (!quota.take(partitions)) {
      resp->responses[i].error_code = code(ErrorCode::kThrottlingQuotaExceeded);
      resp->responses[i].error_message = kThrottlingQuotaMessage;
      finish();
      continue;
    }
    // Partitions are closed and removed by reconcile() when the metadata drops the topic.
    crash_point("delete.before_commit");
    registry_->remove(name, [resp, i, finish, name, refund = quota.refund(partitions)](
                                Result<TopicInfo, TopicError> removed) {
      if (!removed) {
        refund();
        resp->responses[i].error_code = code(removed.error().code);
        resp->responses[i].error_message = removed.error().message;
      } else {
        spdlog::info("deleted topic '{}'", name);
      }
      finish();
    });
  }
  resp->throttle_time_ms = quota.finish();
  finish();
}

void Broker::handle_create_partitions(std::shared_ptr<Request> req,
                                      const kafka::CreatePartitionsRequest& body) {
  auto resp = std::make_shared<kafka::CreatePartitionsResponse>();
  resp->results.resize(body.topics.size());
  auto left = std::make_shared<std::atomic<size_t>>(body.topics.size() + 1);
  auto finish = [req, resp, left] {
    if (left->fetch_sub(1) == 1) respond(*req, *resp);
  };
  MutationQuota quota(*this, *req, req->header.api_version >= 3);
  for (size_t i = 0; i < body.topics.size(); ++i) {
    const auto& t = body.topics[i];
    auto& r = resp->results[i];
    r.name = t.name;
    auto snap = registry_->snapshot();
    const TopicInfo* before = snap->find(t.name);
    if (!allowed(*req, Operation::kAlter, ResourceType::kTopic, t.name)) {
      r.error_code = code(ErrorCode::kTopicAuthorizationFailed);
      r.error_message = "ALTER on topic '" + t.name + "' is needed";
      finish();
      continue;
    }
    if (!before) {
      r.error_code = code(ErrorCode::kUnknownTopicOrPartition);
      r.error_message = "unknown topic '" + t.name + "'";
      finish();
      continue;
    }
    if (auto ok = TopicRegistry::check_client_may_change(t.name); !ok) {
      r.error_code = code(ok.error().code);
      r.error_message = ok.error().message;
      finish();
      continue;
    }
    if (t.count <= before->partitions) {
      r.error_code = code(ErrorCode::kInvalidPartitions);
      r.error_message = "topic '" + t.name + "' already has " + std::to_string(before->partitions) +
                        " partitions";
      finish();
      continue;
    }
    const int32_t added = body.validate_only ? 0 : t.count - before->partitions;
    if (!quota.take(added)) {
      r.error_code = code(ErrorCode::kThrottlingQuotaExceeded);
      r.error_message = kThrottlingQuotaMessage;
      finish();
      continue;
    }
    std::vector<std::vector<int32_t>> assignments;
    if (t.assignments) {
      for (const auto& a : *t.assignments) assignments.push_back(a.broker_ids);
    }
    registry_->set_partition_count(
        t.name, t.count, assignments, body.validate_only,
        [resp, i, finish, name = t.name, count = t.count, validate = body.validate_only,
         refund = quota.refund(added)](Result<TopicInfo, TopicError> grown) {
          if (!grown) {
            refund();
            resp->results[i].error_code = code(grown.error().code);
            resp->results[i].error_message = grown.error().message;
          } else if (!validate) {
            spdlog::info("topic '{}' now has {} partitions", name, count);
          }
          finish();
        });
  }
  resp->throttle_time_ms = quota.finish();
  finish();
}

namespace {

using DescribedConfig = kafka::DescribeConfigsResponse::DescribeConfigsResourceResult;

// The broker-level settings a DescribeConfigs reads: the static ones, the dynamic sets, and
// the settings in force.
struct BrokerLevels {
  const BrokerConfig& base;
  const BrokerConfig& live;
  ConfigMap cluster_default;
  ConfigMap own;
};

// A topic setting as DescribeConfigs reports it, by Kafka's rules: the value in force; its
// source is the topic's own setting, else that of the broker-level setting the default comes
// from (per-broker dynamic, cluster-default dynamic, static, built-in); the synonyms list each
// of those levels that is set, in that order.
DescribedConfig describe_topic_setting(const TopicInfo& topic, const TopicSetting& s,
                                       const BrokerLevels& broker, bool synonyms,
                                       bool documentation) {
  DescribedConfig c;
  const auto own = topic.configs.find(std::string(s.name));
  const bool is_own = own != topic.configs.end();
  std::vector<SettingLevel> levels;
  const BrokerSetting* b = s.broker_synonym.empty() ? nullptr : find_broker_setting(s.broker_synonym);
  if (b) {
    levels = broker_setting_levels(*b, broker.base, broker.cluster_default, broker.own);
  } else if (!s.broker_synonym.empty()) {
    levels.push_back({kSourceDefault, s.default_value(broker.live)});
  }
  c.name = std::string(s.name);
  c.value = topic_setting_value(topic, broker.live, s.name);
  c.config_source = is_own ? kSourceTopicConfig : levels.empty() ? kSourceDefault : levels[0].source;
  c.is_default = c.config_source == kSourceDefault;
  c.is_sensitive = s.sensitive;
  c.config_type = s.type;
  if (synonyms) {
    if (is_own) c.synonyms.push_back({std::string(s.name), own->second, kSourceTopicConfig});
    for (const SettingLevel& l : levels) {
      c.synonyms.push_back({std::string(s.broker_synonym), l.value, l.source});
    }
  }
  if (documentation && !s.used) {
    c.documentation = "Kafka topic setting, accepted and stored; Sluice does not act on it.";
  }
  return c;
}

// A broker setting as DescribeConfigs reports it for the broker "<id>".
DescribedConfig describe_broker_setting(const BrokerSetting& s, const BrokerLevels& broker,
                                        bool synonyms) {
  const auto levels = broker_setting_levels(s, broker.base, broker.cluster_default, broker.own);
  DescribedConfig c;
  c.name = std::string(s.name);
  c.value = s.get(broker.live);
  c.read_only = !s.dynamic();
  c.config_source = levels[0].source;
  c.is_default = c.config_source == kSourceDefault;
  c.config_type = s.type;
  if (synonyms) {
    for (const SettingLevel& l : levels) c.synonyms.push_back({c.name, l.value, l.source});
  }
  return c;
}

std::string unexpected_broker(int32_t own, const std::string& name) {
  return "Unexpected broker id, expected " + std::to_string(own) +
         " or empty string, but received " + name;
}

}  // namespace

void Broker::handle_describe_configs(std::shared_ptr<Request> req,
                                     const kafka::DescribeConfigsRequest& body) {
  kafka::DescribeConfigsResponse resp;
  auto snap = registry_->snapshot();
  const auto image = cluster_->image();
  const auto live = live_config();
  const BrokerLevels broker{config_, *live, dynamic_configs(*image, ""),
                            dynamic_configs(*image, std::to_string(config_.node_id))};
  for (const auto& res : body.resources) {
    kafka::DescribeConfigsResponse::DescribeConfigsResult out;
    out.resource_type = res.resource_type;
    out.resource_name = res.resource_name;
    auto wanted = [&](std::string_view name) {
      if (!res.configuration_keys) return true;
      for (const auto& k : *res.configuration_keys) {
        if (k == name) return true;
      }
      return false;
    };
    if (int16_t denied = config_denied(*req, res.resource_type, res.resource_name, false)) {
      out.error_code = denied;
      out.error_message = "not authorized to describe these settings";
    } else if (res.resource_type == kResourceTopic) {
      const TopicInfo* t = snap->find(res.resource_name);
      if (!t) {
        out.error_code = code(ErrorCode::kUnknownTopicOrPartition);
        out.error_message = "unknown topic '" + res.resource_name + "'";
      } else {
        for (const auto& s : topic_settings()) {
          if (!wanted(s.name)) continue;
          out.configs.push_back(describe_topic_setting(*t, s, broker, body.include_synonyms,
                                                       body.include_documentation));
        }
      }
    } else if (res.resource_type == kResourceBroker && res.resource_name.empty()) {
      // The cluster-wide default: only what is set there (Kafka's answer).
      for (const auto& [name, value] : broker.cluster_default) {
        if (!wanted(name)) continue;
        DescribedConfig c;
        c.name = name;
        c.value = value;
        c.config_source = kSourceDynamicDefaultBroker;
        const BrokerSetting* s = find_broker_setting(name);
        c.config_type = s ? s->type : 2;
        if (body.include_synonyms) c.synonyms.push_back({name, value, kSourceDynamicDefaultBroker});
        out.configs.push_back(std::move(c));
      }
    } else if (res.resource_type == kResourceBroker) {
      if (res.resource_name != std::to_string(config_.node_id)) {
        out.error_code = code(ErrorCode::kInvalidRequest);
        out.error_message = unexpected_broker(config_.node_id, res.resource_name);
      } else {
        for (const BrokerSetting& s : broker_settings()) {
          if (wanted(s.name)) {
            out.configs.push_back(describe_broker_setting(s, broker, body.include_synonyms));
          }
        }
        // Custom settings (kept, no effect), with their levels: this broker's own value, then
        // the cluster default's.
        std::set<std::string> custom;
        for (const ConfigMap* level : {&broker.own, &broker.cluster_default}) {
          for (std::string& name : custom_broker_configs(*level)) custom.insert(std::move(name));
        }
        for (const std::string& name : custom) {
          if (!wanted(name)) continue;
          std::vector<SettingLevel> levels;
          if (auto it = broker.own.find(name); it != broker.own.end()) {
            levels.push_back({kSourceDynamicBroker, it->second});
          }
          if (auto it = broker.cluster_default.find(name); it != broker.cluster_default.end()) {
            levels.push_back({kSourceDynamicDefaultBroker, it->second});
          }
          DescribedConfig c;
          c.name = name;
          c.value = levels[0].value;
          c.config_source = levels[0].source;
          c.config_type = 2;  // STRING
          if (body.include_synonyms) {
            for (const SettingLevel& l : levels) c.synonyms.push_back({name, l.value, l.source});
          }
          out.configs.push_back(std::move(c));
        }
      }
    } else {
      out.error_code = code(ErrorCode::kInvalidRequest);
      out.error_message = "resource type " + std::to_string(res.resource_type) +
                          " is not supported (topics: 2, brokers: 4)";
    }
    resp.results.push_back(std::move(out));
  }
  respond(*req, resp);
}

namespace {

// A resource's new settings, validated, waiting to go to the controller: a topic's explicit
// settings, or a BROKER resource's whole dynamic set.
struct PendingAlter {
  size_t index = 0;  // into the response's resources
  bool broker = false;
  std::string name;  // the topic, or the broker resource ("" or "<id>")
  std::map<std::string, std::string> configs;
};

// Validates a resource's new settings (shared by both alter APIs); a valid change that is
// not validate-only is queued for the controller. Broker resources other than "" and this
// broker's id were refused before.
// `before`: a broker resource's dynamic configs now (custom ones it already holds are not
// warned about again).
template <class Out>
void check_alter(size_t index, int8_t type, const std::string& name,
                 const std::map<std::string, std::string>& configs, const ConfigMap& before,
                 bool validate_only, Out& out, std::vector<PendingAlter>& pending) {
  if (type == kResourceBroker) {
    if (std::string why = validate_broker_configs(configs); !why.empty()) {
      out.error_code = code(ErrorCode::kInvalidRequest);
      out.error_message = "Invalid config value for resource BROKER '" + name + "': " + why;
      return;
    }
    if (!validate_only) {
      for (const std::string& custom : custom_broker_configs(configs)) {
        if (auto was = before.find(custom);
            was != before.end() && was->second == configs.at(custom)) {
          continue;  // unchanged: said when it was set
        }
        spdlog::warn(
            "dynamic broker config '{}' of {} is no setting of Sluice's: kept (as Kafka keeps "
            "custom configs), with no effect",
            custom, name.empty() ? std::string("the cluster default") : "broker " + name);
      }
    }
  } else {
    auto v = TopicRegistry::check_client_may_change(name);
    if (v) v = validate_topic_configs(configs);
    if (!v) {
      out.error_code = code(v.error().code);
      out.error_message = v.error().message;
      return;
    }
  }
  if (!validate_only) pending.push_back({index, type == kResourceBroker, name, configs});
}

// Sends the queued changes to the controller and answers once all are done. The partitions
// pick up new topic settings when the metadata arrives (Broker::reconcile), every broker its
// new dynamic configs (Broker::apply_dynamic_config).
template <class Response, class Respond>
void apply_alters(TopicRegistry& registry, std::shared_ptr<Response> resp,
                  std::vector<PendingAlter> pending, Respond respond_fn) {
  auto left = std::make_shared<std::atomic<size_t>>(pending.size() + 1);
  auto finish = [resp, left, respond_fn] {
    if (left->fetch_sub(1) == 1) respond_fn(*resp);
  };
  for (auto& a : pending) {
    auto done = [resp, finish, index = a.index, broker = a.broker,
                 name = a.name](Result<TopicInfo, TopicError> r) {
      auto& out = resp->responses[index];
      if (!r) {
        out.error_code = code(r.error().code);
        out.error_message = r.error().message;
      } else if (broker) {
        spdlog::info("dynamic broker configs of {} changed",
                     name.empty() ? std::string("the cluster default") : "broker " + name);
      } else {
        spdlog::info("topic '{}': settings changed", name);
      }
      finish();
    };
    if (a.broker) {
      registry.set_broker_configs(a.name, a.configs, std::move(done));
    } else {
      registry.set_configs(a.name, a.configs, std::move(done));
    }
  }
  finish();
}

// IncrementalAlterConfigs' operations on a resource's settings. `in_force` gives a setting's
// value in force (APPEND and SUBTRACT start from it), nullopt for an unknown one. Returns
// false with `out` filled on a bad operation.
template <class Ops, class Out, class InForce>
bool apply_config_ops(const Ops& ops, std::map<std::string, std::string>& configs,
                      InForce in_force, int16_t unknown_code, Out& out) {
  for (const auto& c : ops) {
    const std::string value = c.value.value_or("");
    std::optional<std::string> cur;
    if (c.config_operation == 2 || c.config_operation == 3) {
      // APPEND and SUBTRACT start from the value in force, which only known settings have.
      cur = in_force(c.name);
      if (!cur) {
        out.error_code = unknown_code;
        out.error_message = "unknown setting '" + c.name + "'";
        return false;
      }
    }
    switch (c.config_operation) {
      case 0:  // SET
        configs[c.name] = value;
        break;
      case 1:  // DELETE: back to the next source
        configs.erase(c.name);
        break;
      case 2:  // APPEND to a list
        configs[c.name] = cur->empty() ? value : *cur + "," + value;
        break;
      case 3: {  // SUBTRACT from a list
        std::string next;
        size_t start = 0;
        while (start <= cur->size()) {
          size_t end = cur->find(',', start);
          if (end == std::string::npos) end = cur->size();
          std::string item = cur->substr(start, end - start);
          if (item != value && !item.empty()) next += (next.empty() ? "" : ",") + item;
          start = end + 1;
        }
        configs[c.name] = next;
        break;
      }
      default:
        out.error_code = code(ErrorCode::kInvalidRequest);
        out.error_message = "unknown config operation " + std::to_string(c.config_operation);
        return false;
    }
  }
  return true;
}

}  // namespace

template <class Out>
bool Broker::check_config_resource(const Request& req, int8_t type, const std::string& name,
                                   Out& out) {
  if (int16_t denied = config_denied(req, type, name, true)) {
    out.error_code = denied;
    out.error_message = "not authorized to alter these settings";
  } else if (type == kResourceBroker) {
    if (name.empty() || name == std::to_string(config_.node_id)) return true;
    out.error_code = code(ErrorCode::kInvalidRequest);
    out.error_message = unexpected_broker(config_.node_id, name);
  } else if (type != kResourceTopic) {
    out.error_code = code(ErrorCode::kInvalidRequest);
    out.error_message = "resource type " + std::to_string(type) +
                        " cannot be altered (topics: 2, brokers: 4)";
  } else if (!registry_->find(name)) {
    out.error_code = code(ErrorCode::kUnknownTopicOrPartition);
    out.error_message = "unknown topic '" + name + "'";
  } else {
    return true;
  }
  return false;
}

void Broker::handle_alter_configs(std::shared_ptr<Request> req,
                                  const kafka::AlterConfigsRequest& body) {
  auto resp = std::make_shared<kafka::AlterConfigsResponse>();
  std::vector<PendingAlter> pending;
  const auto image = cluster_->image();
  for (const auto& res : body.resources) {
    kafka::AlterConfigsResponse::AlterConfigsResourceResponse out;
    out.resource_type = res.resource_type;
    out.resource_name = res.resource_name;
    if (check_config_resource(*req, res.resource_type, res.resource_name, out)) {
      std::map<std::string, std::string> configs;  // AlterConfigs replaces the whole set
      for (const auto& c : res.configs) {
        if (c.value) configs[c.name] = *c.value;
      }
      check_alter(resp->responses.size(), res.resource_type, res.resource_name, configs,
                  res.resource_type == kResourceBroker ? dynamic_configs(*image, res.resource_name)
                                                       : ConfigMap{},
                  body.validate_only, out, pending);
    }
    resp->responses.push_back(std::move(out));
  }
  apply_alters(*registry_, resp, std::move(pending),
               [req](const kafka::AlterConfigsResponse& r) { respond(*req, r); });
}

void Broker::handle_incremental_alter_configs(std::shared_ptr<Request> req,
                                              const kafka::IncrementalAlterConfigsRequest& body) {
  auto resp = std::make_shared<kafka::IncrementalAlterConfigsResponse>();
  std::vector<PendingAlter> pending;
  const auto image = cluster_->image();
  const auto live = live_config();
  for (const auto& res : body.resources) {
    kafka::IncrementalAlterConfigsResponse::AlterConfigsResourceResponse out;
    out.resource_type = res.resource_type;
    out.resource_name = res.resource_name;
    if (!check_config_resource(*req, res.resource_type, res.resource_name, out)) {
      resp->responses.push_back(std::move(out));
      continue;
    }
    std::map<std::string, std::string> configs;
    ConfigMap before;
    bool ok = false;
    if (res.resource_type == kResourceBroker) {
      before = dynamic_configs(*image, res.resource_name);
      configs = before;
      ok = apply_config_ops(
          res.configs, configs,
          [&](const std::string& name) -> std::optional<std::string> {
            const BrokerSetting* s = find_broker_setting(name);
            if (!s) return std::nullopt;
            auto it = configs.find(name);
            return it != configs.end() ? it->second : s->get(*live);
          },
          code(ErrorCode::kInvalidRequest), out);
    } else {
      const std::optional<TopicInfo> t = registry_->find(res.resource_name);
      if (!t) {
        out.error_code = code(ErrorCode::kUnknownTopicOrPartition);
        out.error_message = "unknown topic '" + res.resource_name + "'";
      } else {
        configs = t->configs;
        ok = apply_config_ops(
            res.configs, configs,
            [&](const std::string& name) -> std::optional<std::string> {
              if (!find_topic_setting(name)) return std::nullopt;
              return topic_setting_value(*t, *live, name);
            },
            code(ErrorCode::kInvalidConfig), out);
      }
    }
    if (ok) {
      check_alter(resp->responses.size(), res.resource_type, res.resource_name, configs, before,
                  body.validate_only, out, pending);
    }
    resp->responses.push_back(std::move(out));
  }
  apply_alters(*registry_, resp, std::move(pending),
               [req](const kafka::IncrementalAlterConfigsResponse& r) { respond(*req, r); });
}

}  // namespace sluice::broker
