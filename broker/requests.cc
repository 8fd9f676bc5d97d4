// Request decoding and dispatch, and the handlers for cluster and topic administration:
// ApiVersions, Metadata, CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs,
// AlterConfigs, IncrementalAlterConfigs.
#include <spdlog/spdlog.h>

#include <set>

#include "broker/broker.h"
#include "broker/kafka_errors.h"
#include "broker/topic_config.h"

namespace sluice::broker {

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
    served<kafka::InitProducerIdRequest>(),
    served<kafka::DescribeConfigsRequest>(),
    served<kafka::AlterConfigsRequest>(),
    served<kafka::CreatePartitionsRequest>(),
    served<kafka::IncrementalAlterConfigsRequest>(),
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
};

const Served* find_served(int16_t key) {
  for (const Served& s : kServed) {
    if (static_cast<int16_t>(s.key) == key) return &s;
  }
  return nullptr;
}

constexpr int8_t kResourceTopic = 2;
constexpr int8_t kResourceBroker = 4;
constexpr int8_t kSourceTopicConfig = 1;
constexpr int8_t kSourceStaticBroker = 4;
constexpr int8_t kSourceDefault = 5;

int8_t config_type(std::string_view name) {
  if (name == "cleanup.policy") return 7;  // LIST
  if (name == "unclean.leader.election.enable" || name == "auto.create.topics.enable") return 1;
  if (name == "min.cleanable.dirty.ratio") return 6;  // DOUBLE
  if (name == "max.message.bytes" || name == "segment.bytes" || name == "min.insync.replicas" ||
      name == "num.partitions")
    return 3;                                                       // INT
  if (name.ends_with(".ms") || name.ends_with(".bytes")) return 5;  // LONG
  return 2;                                                         // STRING
}

}  // namespace

void Broker::handle(const ConnectionInfo& conn, RequestFrame frame, Done done) {
  kafka::Reader reader(frame.bytes());
  auto header = kafka::decode_request_header(reader);
  if (!header) {
    spdlog::warn("connection {} from {}: closing, bad request header: {}", conn.id, conn.peer,
                 header.error().to_string());
    done(Reply::close());
    return;
  }
  if (kafka::needs_api_versions_fallback(*header)) {
    done(Reply{Reply::Kind::kFrame,
               OutFrame{kafka::api_versions_unsupported_response(header->correlation_id), {}}});
    return;
  }
  const Served* s = find_served(header->api_key);
  if (!s || header->api_version < s->min || header->api_version > s->max) {
    spdlog::warn("connection {} from {} ({}): closing, API key {} version {} is not served",
                 conn.id, conn.peer, header->client_id, header->api_key, header->api_version);
    done(Reply::close());
    return;
  }
  auto body = kafka::decode_request(static_cast<ApiKey>(header->api_key), header->api_version,
                                    reader.rest());
  if (!body) {
    spdlog::warn("connection {} from {} ({}): closing, malformed request (key {} v{}): {}", conn.id,
                 conn.peer, header->client_id, header->api_key, header->api_version,
                 body.error().to_string());
    done(Reply::close());
    return;
  }
  auto req = std::make_shared<Request>(
      Request{conn, std::move(frame), std::move(*header), std::move(done)});
  dispatch(std::move(req), std::move(*body));
}

void Broker::dispatch(std::shared_ptr<Request> req, kafka::RequestBody body) {
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
        } else if constexpr (std::is_same_v<T, kafka::ProduceRequest>) {
          handle_produce(req, std::move(b));
        } else if constexpr (std::is_same_v<T, kafka::FetchRequest>) {
          handle_fetch(req, std::move(b));
        } else if constexpr (std::is_same_v<T, kafka::ListOffsetsRequest>) {
          handle_list_offsets(req, b);
        } else if constexpr (std::is_same_v<T, kafka::InitProducerIdRequest>) {
          handle_init_producer_id(req, b);
        } else if constexpr (std::is_same_v<T, kafka::FindCoordinatorRequest> ||
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
  if (all) {
    for (const auto& [name, t] : snap->topics) names.push_back(name);
  } else {
    for (const auto& t : *body.topics) names.push_back(t.name);
  }
  // Auto-create explicitly named topics that do not exist (never for "all topics").
  std::vector<std::string> to_create;
  if (!all && config_.auto_create_topics && body.allow_auto_topic_creation) {
    std::set<std::string> seen;
    for (const auto& n : names) {
      if (!snap->find(n) && TopicRegistry::validate_name(n) && seen.insert(n).second) {
        to_create.push_back(n);
      }
    }
  }
  auto answer = [this, req, names, all]() {
    auto snap = registry_->snapshot();
    kafka::MetadataResponse resp;
    const HostPort& adv = config_.advertised_address();
    resp.brokers.push_back({config_.node_id, adv.host, adv.port, std::nullopt});
    resp.cluster_id = registry_->cluster_id();
    resp.controller_id = config_.node_id;
    for (const auto& name : names) {
      kafka::MetadataResponse::MetadataResponseTopic t;
      t.name = name;
      const TopicInfo* info = snap->find(name);
      if (!info) {
        auto valid = TopicRegistry::validate_name(name);
        t.error_code =
            code(valid ? ErrorCode::kUnknownTopicOrPartition : ErrorCode::kInvalidTopicException);
      } else {
        t.is_internal = info->internal || TopicRegistry::is_internal(name);
        for (int32_t i = 0; i < info->partitions; ++i) {
          kafka::MetadataResponse::MetadataResponsePartition p;
          p.partition_index = i;
          p.leader_id = config_.node_id;
          p.leader_epoch = 0;
          p.replica_nodes = {config_.node_id};
          p.isr_nodes = {config_.node_id};
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
  for (const auto& name : to_create) {
    create_topic(name, config_.num_partitions, config_.default_replication_factor, {},
                 [left, answer, name](Result<TopicInfo, TopicError> r) {
                   if (!r && r.error().code != ErrorCode::kTopicAlreadyExists) {
                     spdlog::warn("auto-creating topic '{}' failed: {}", name, r.error().message);
                   }
                   if (left->fetch_sub(1) == 1) answer();
                 });
  }
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
  for (size_t i = 0; i < body.topics.size(); ++i) {
    const auto& t = body.topics[i];
    Result_& r = resp->topics[i];
    r.name = t.name;
    int32_t partitions = t.num_partitions;
    int32_t rf = t.replication_factor;
    std::map<std::string, std::string> configs;
    for (const auto& c : t.configs) {
      if (c.value) configs[c.name] = *c.value;
    }
    if (counts[t.name] > 1) {
      fail(r, ErrorCode::kInvalidRequest, "topic '" + t.name + "' is named more than once");
    } else if (!t.assignments.empty() && (partitions != -1 || rf != -1)) {
      fail(r, ErrorCode::kInvalidRequest,
           "with replica assignments, numPartitions and replicationFactor must be -1");
    } else {
      if (!t.assignments.empty()) {
        partitions = static_cast<int32_t>(t.assignments.size());
        rf = static_cast<int32_t>(t.assignments.front().broker_ids.size());
        for (const auto& a : t.assignments) {
          for (int32_t b : a.broker_ids) {
            if (b != config_.node_id) rf = -100;
          }
        }
        if (rf == -100) {
          fail(r, ErrorCode::kInvalidReplicaAssignment,
               "assignment names a broker that does not exist (this cluster has node " +
                   std::to_string(config_.node_id) + ")");
        }
      }
      if (partitions == -1) partitions = config_.num_partitions;
      if (rf == -1) rf = config_.default_replication_factor;
      if (r.error_code != 0) {
      } else if (auto v = TopicRegistry::validate_name(t.name); !v) {
        fail(r, v.error().code, v.error().message);
      } else if (partitions <= 0) {
        fail(r, ErrorCode::kInvalidPartitions, "number of partitions must be at least 1");
      } else if (rf <= 0 || rf > 1) {
        fail(r, ErrorCode::kInvalidReplicationFactor,
             "replication factor " + std::to_string(rf) +
                 " is not possible with the 1 broker of this cluster");
      } else if (auto c = validate_topic_configs(configs); !c) {
        fail(r, c.error().code, c.error().message);
      } else if (registry_->find(t.name)) {
        fail(r, ErrorCode::kTopicAlreadyExists, "topic '" + t.name + "' already exists");
      }
    }
    r.num_partitions = r.error_code == 0 ? partitions : -1;
    r.replication_factor = r.error_code == 0 ? static_cast<int16_t>(rf) : int16_t{-1};
    if (r.error_code != 0 || body.validate_only) {
      if (r.error_code == 0) {
        r.configs.emplace();
        for (const auto& [k, v] : configs)
          r.configs->push_back({k, v, false, kSourceTopicConfig, false});
      }
      finish();
      continue;
    }
    create_topic(t.name, partitions, static_cast<int16_t>(rf), configs,
                 [resp, i, finish](Result<TopicInfo, TopicError> created) {
                   Result_& r = resp->topics[i];
                   if (!created) {
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
  finish();
}

void Broker::handle_delete_topics(std::shared_ptr<Request> req,
                                  const kafka::DeleteTopicsRequest& body) {
  kafka::DeleteTopicsResponse resp;
  for (const auto& name : body.topic_names) {
    kafka::DeleteTopicsResponse::DeletableTopicResult r;
    r.name = name;
    Result<TopicInfo, TopicError> removed = [&]() -> Result<TopicInfo, TopicError> {
      std::lock_guard lock(topic_changes_mutex_);
      return registry_->remove(name);
    }();
    if (!removed) {
      r.error_code = code(removed.error().code);
    } else {
      spdlog::info("deleted topic '{}'", name);
      delete_partitions(*removed);
    }
    resp.responses.push_back(std::move(r));
  }
  respond(*req, resp);
}

void Broker::handle_create_partitions(std::shared_ptr<Request> req,
                                      const kafka::CreatePartitionsRequest& body) {
  auto resp = std::make_shared<kafka::CreatePartitionsResponse>();
  resp->results.resize(body.topics.size());
  auto left = std::make_shared<std::atomic<size_t>>(body.topics.size() + 1);
  auto finish = [req, resp, left] {
    if (left->fetch_sub(1) == 1) respond(*req, *resp);
  };
  for (size_t i = 0; i < body.topics.size(); ++i) {
    const auto& t = body.topics[i];
    auto& r = resp->results[i];
    r.name = t.name;
    const std::optional<TopicInfo> before = registry_->find(t.name);
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
    if (body.validate_only) {
      finish();
      continue;
    }
    const int32_t old_count = before->partitions;
    Result<TopicInfo, TopicError> grown = [&]() -> Result<TopicInfo, TopicError> {
      std::lock_guard lock(topic_changes_mutex_);
      return registry_->set_partition_count(t.name, t.count);
    }();
    if (!grown) {
      r.error_code = code(grown.error().code);
      r.error_message = grown.error().message;
      finish();
      continue;
    }
    spdlog::info("topic '{}' now has {} partitions", t.name, t.count);
    open_partitions(*grown, old_count, t.count, [resp, i, finish](Status s) {
      if (!s) {
        resp->results[i].error_code = code(ErrorCode::kKafkaStorageError);
        resp->results[i].error_message = s.error().message;
      }
      finish();
    });
  }
  finish();
}

void Broker::handle_describe_configs(std::shared_ptr<Request> req,
                                     const kafka::DescribeConfigsRequest& body) {
  kafka::DescribeConfigsResponse resp;
  auto snap = registry_->snapshot();
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
    auto add = [&](std::string_view name, std::string value, int8_t source) {
      if (!wanted(name)) return;
      kafka::DescribeConfigsResponse::DescribeConfigsResourceResult c;
      c.name = std::string(name);
      c.value = std::move(value);
      c.config_source = source;
      c.is_default = source == kSourceDefault;
      c.config_type = config_type(name);
      out.configs.push_back(std::move(c));
    };
    if (res.resource_type == kResourceTopic) {
      const TopicInfo* t = snap->find(res.resource_name);
      if (!t) {
        out.error_code = code(ErrorCode::kUnknownTopicOrPartition);
        out.error_message = "unknown topic '" + res.resource_name + "'";
      } else {
        for (const auto& s : topic_settings()) {
          const bool own = t->configs.count(std::string(s.name)) > 0;
          add(s.name, topic_setting_value(*t, config_, s.name),
              own ? kSourceTopicConfig : kSourceDefault);
        }
      }
    } else if (res.resource_type == kResourceBroker) {
      if (!res.resource_name.empty() && res.resource_name != std::to_string(config_.node_id)) {
        out.error_code = code(ErrorCode::kInvalidRequest);
        out.error_message = "unknown broker '" + res.resource_name + "'";
      } else {
        add("broker.id", std::to_string(config_.node_id), kSourceStaticBroker);
        add("num.partitions", std::to_string(config_.num_partitions), kSourceStaticBroker);
        add("default.replication.factor", std::to_string(config_.default_replication_factor),
            kSourceStaticBroker);
        add("auto.create.topics.enable", config_.auto_create_topics ? "true" : "false",
            kSourceStaticBroker);
        add("log.segment.bytes", std::to_string(config_.segment_bytes), kSourceStaticBroker);
        add("log.retention.ms", std::to_string(config_.retention_ms), kSourceStaticBroker);
        add("log.retention.bytes", std::to_string(config_.retention_bytes), kSourceStaticBroker);
        add("message.max.bytes", std::to_string(config_.message_max_bytes), kSourceStaticBroker);
        add("socket.request.max.bytes", std::to_string(config_.request_max_bytes),
            kSourceStaticBroker);
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

// Validates and stores a topic's new explicit settings (shared by both alter APIs).
template <class Response>
void alter_topic(TopicRegistry& registry, std::mutex& mutex, const std::string& topic,
                 const std::map<std::string, std::string>& configs, bool validate_only,
                 typename Response::AlterConfigsResourceResponse& out,
                 std::vector<TopicInfo>& changed) {
  auto v = TopicRegistry::check_client_may_change(topic);
  if (v) v = validate_topic_configs(configs);
  if (!v) {
    out.error_code = code(v.error().code);
    out.error_message = v.error().message;
    return;
  }
  if (validate_only) return;
  std::lock_guard lock(mutex);
  auto r = registry.set_configs(topic, configs);
  if (!r) {
    out.error_code = code(r.error().code);
    out.error_message = r.error().message;
    return;
  }
  changed.push_back(*r);
}

}  // namespace

void Broker::handle_alter_configs(std::shared_ptr<Request> req,
                                  const kafka::AlterConfigsRequest& body) {
  kafka::AlterConfigsResponse resp;
  std::vector<TopicInfo> changed;
  for (const auto& res : body.resources) {
    kafka::AlterConfigsResponse::AlterConfigsResourceResponse out;
    out.resource_type = res.resource_type;
    out.resource_name = res.resource_name;
    if (res.resource_type != kResourceTopic) {
      out.error_code = code(ErrorCode::kInvalidRequest);
      out.error_message = "only topic settings can be altered";
    } else if (!registry_->find(res.resource_name)) {
      out.error_code = code(ErrorCode::kUnknownTopicOrPartition);
      out.error_message = "unknown topic '" + res.resource_name + "'";
    } else {
      std::map<std::string, std::string> configs;  // AlterConfigs replaces the whole set
      for (const auto& c : res.configs) {
        if (c.value) configs[c.name] = *c.value;
      }
      alter_topic<kafka::AlterConfigsResponse>(*registry_, topic_changes_mutex_, res.resource_name,
                                               configs, body.validate_only, out, changed);
    }
    resp.responses.push_back(std::move(out));
  }
  for (const auto& t : changed) {
    spdlog::info("topic '{}': settings changed", t.name);
    apply_topic_settings(t);
  }
  respond(*req, resp);
}

void Broker::handle_incremental_alter_configs(std::shared_ptr<Request> req,
                                              const kafka::IncrementalAlterConfigsRequest& body) {
  kafka::IncrementalAlterConfigsResponse resp;
  std::vector<TopicInfo> changed;
  for (const auto& res : body.resources) {
    kafka::IncrementalAlterConfigsResponse::AlterConfigsResourceResponse out;
    out.resource_type = res.resource_type;
    out.resource_name = res.resource_name;
    const std::optional<TopicInfo> t = res.resource_type == kResourceTopic
                                           ? registry_->find(res.resource_name)
                                           : std::nullopt;
    if (res.resource_type != kResourceTopic) {
      out.error_code = code(ErrorCode::kInvalidRequest);
      out.error_message = "only topic settings can be altered";
    } else if (!t) {
      out.error_code = code(ErrorCode::kUnknownTopicOrPartition);
      out.error_message = "unknown topic '" + res.resource_name + "'";
    } else {
      std::map<std::string, std::string> configs = t->configs;
      for (const auto& c : res.configs) {
        const std::string value = c.value.value_or("");
        switch (c.config_operation) {
          case 0:
            configs[c.name] = value;
            break;  // SET
          case 1:
            configs.erase(c.name);
            break;   // DELETE
          case 2: {  // APPEND to a list
            std::string cur = topic_setting_value(*t, config_, c.name);
            configs[c.name] = cur.empty() ? value : cur + "," + value;
            break;
          }
          case 3: {  // SUBTRACT from a list
            std::string cur = topic_setting_value(*t, config_, c.name), next;
            size_t start = 0;
            while (start <= cur.size()) {
              size_t end = cur.find(',', start);
              if (end == std::string::npos) end = cur.size();
              std::string item = cur.substr(start, end - start);
              if (item != value && !item.empty()) next += (next.empty() ? "" : ",") + item;
              start = end + 1;
            }
            configs[c.name] = next;
            break;
          }
          default:
            out.error_code = code(ErrorCode::kInvalidRequest);
            out.error_message = "unknown config operation " + std::to_string(c.config_operation);
        }
      }
      if (out.error_code == 0) {
        alter_topic<kafka::IncrementalAlterConfigsResponse>(*registry_, topic_changes_mutex_,
                                                            res.resource_name, configs,
                                                            body.validate_only, out, changed);
      }
    }
    resp.responses.push_back(std::move(out));
  }
  for (const auto& t : changed) {
    spdlog::info("topic '{}': settings changed", t.name);
    apply_topic_settings(t);
  }
  respond(*req, resp);
}

}  // namespace sluice::broker
