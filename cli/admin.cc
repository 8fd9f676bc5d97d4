// sluice topic ..., sluice group ..., sluice cluster info: admin requests through the client.
#include <algorithm>
#include <future>
#include <iomanip>
#include <iostream>
#include <map>
#include <set>

#include "cli/cli.h"
#include "cli/codec.h"
#include "common/json.h"
#include "consumer/assignor.h"
#include "protocol/error_codes.h"

namespace sluice::cli {

namespace {

using client::kAnyBroker;

constexpr int8_t kResourceTopic = 2;
constexpr int8_t kResourceBroker = 4;

bool split_kv(const std::string& s, std::string& k, std::string& v) {
  auto eq = s.find('=');
  if (eq == std::string::npos || eq == 0) return false;
  k = s.substr(0, eq);
  v = s.substr(eq + 1);
  return true;
}

// Error of a per-item result, or ok.
Status item_error(int16_t code, const std::optional<std::string>& message,
                  const std::string& what) {
  if (code == 0) return {};
  Error e = client::kafka_error(code, what);
  if (message && !message->empty()) e.message += ": " + *message;
  return unexpected(e);
}

void topic_create(Context& ctx, const std::string& name, int32_t partitions, int16_t replication,
                  const std::vector<std::string>& configs) {
  kafka::CreateTopicsRequest req;
  kafka::CreateTopicsRequest::CreatableTopic t;
  t.name = name;
  t.num_partitions = partitions;
  t.replication_factor = replication;
  for (const auto& c : configs) {
    std::string k, v;
    if (!split_kv(c, k, v)) return usage_error(ctx, "--config wants key=value, got '" + c + "'");
    t.configs.push_back({k, v});
  }
  req.topics.push_back(t);
  req.timeout_ms = 30000;
  auto r = ctx.admin().call_as<kafka::CreateTopicsResponse>(kAnyBroker, req);
  if (!r) return fail(ctx, "topic create " + name, r.error());
  for (const auto& res : r->topics) {
    if (auto s = item_error(res.error_code, res.error_message, "topic create " + res.name); !s) {
      std::cerr << "sluice: " << s.error().message << "\n";
      ctx.exit_code = kExitFailure;
    }
  }
}

void topic_list(Context& ctx, bool json) {
  auto md = ctx.admin().metadata({}, true, true);
  if (!md) return fail(ctx, "topic list", md.error());
  JsonWriter w;
  w.begin_array();
  for (const auto& [name, t] : (*md)->topics) {
    if (json) {
      w.begin_object().field("name", name);
      w.field("partitions", static_cast<int64_t>(t.partitions.size()));
      w.field("internal", t.internal).end_object();
    } else {
      std::cout << name << "\n";
    }
  }
  if (json) std::cout << w.end_array().take() << "\n";
}

// Kafka's ConfigSource names (DescribeConfigs v1+).
const char* config_source_name(int8_t source) {
  switch (source) {
    case 1:
      return "DYNAMIC_TOPIC_CONFIG";
    case 2:
      return "DYNAMIC_BROKER_CONFIG";
    case 3:
      return "DYNAMIC_DEFAULT_BROKER_CONFIG";
    case 4:
      return "STATIC_BROKER_CONFIG";
    case 5:
      return "DEFAULT_CONFIG";
    case 6:
      return "DYNAMIC_BROKER_LOGGER_CONFIG";
    default:
      return "UNKNOWN";
  }
}

Result<std::map<TopicPartition, int64_t>> end_offsets(Context& ctx,
                                                      const std::set<TopicPartition>& tps,
                                                      int64_t timestamp);

// Partition sizes on disk (DescribeLogDirs), asked of every broker that holds a replica of
// one of `topics`, all at once. A broker that cannot answer (down, or too old to serve the
// API) leaves its replicas' sizes unknown: a warning on stderr, not a failure.
using ReplicaSizes = std::map<std::pair<TopicPartition, int32_t>, int64_t>;  // (tp, broker)

ReplicaSizes replica_sizes(Context& ctx, const client::ClusterMetadata& md,
                           const std::vector<std::string>& topics) {
  std::map<int32_t, kafka::DescribeLogDirsRequest> by_broker;
  for (const auto& name : topics) {
    const client::TopicInfo* t = md.topic(name);
    if (!t || t->error_code != 0) continue;
    for (const auto& p : t->partitions) {
      for (int32_t b : p.replicas) {
        auto& req = by_broker[b];
        if (!req.topics) req.topics.emplace();
        client::entry_for(*req.topics,
                          &kafka::DescribeLogDirsRequest::DescribableLogDirTopic::topic, name)
            .partitions.push_back(p.partition);
      }
    }
  }
  std::vector<std::pair<int32_t, std::future<Result<client::Response>>>> answers;
  for (auto& [broker, req] : by_broker) {
    auto promise = std::make_shared<std::promise<Result<client::Response>>>();
    answers.emplace_back(broker, promise->get_future());
    ctx.admin().send(broker, std::move(req),
                     [promise](Result<client::Response> r) { promise->set_value(std::move(r)); });
  }
  ReplicaSizes sizes;
  for (auto& [broker, future] : answers) {
    auto r = future.get();
    const kafka::DescribeLogDirsResponse* resp =
        r ? std::get_if<kafka::DescribeLogDirsResponse>(&r->decoded->body) : nullptr;
    if (!resp || resp->error_code != 0) {
      std::cerr
          << "sluice: warning: partition sizes on broker " << broker << " unknown: "
          << (!r ? r.error().message
                 : client::kafka_error(resp ? resp->error_code : 2, "DescribeLogDirs").message)
          << "\n";
      continue;
    }
    for (const auto& dir : resp->results) {
      if (dir.error_code != 0) continue;
      for (const auto& t : dir.topics) {
        for (const auto& p : t.partitions) {
          if (p.is_future_key) continue;
          sizes[{{t.name, p.partition_index}, broker}] += p.partition_size;
        }
      }
    }
  }
  return sizes;
}

struct DescribeOptions {
  std::vector<std::string> names;
  bool all_configs = false;  // every setting with its source, not only those set
  bool json = false;
};

void topic_describe(Context& ctx, const DescribeOptions& o) {
  auto md = ctx.admin().metadata(o.names, true, o.names.empty());
  if (!md) return fail(ctx, "topic describe", md.error());
  std::vector<std::string> list = o.names;
  if (list.empty()) {
    for (const auto& [name, t] : (*md)->topics) list.push_back(name);
  }
  const ReplicaSizes sizes = replica_sizes(ctx, **md, list);
  auto size_of = [&](const TopicPartition& tp, int32_t broker) {
    auto it = sizes.find({tp, broker});
    return it == sizes.end() ? std::optional<int64_t>() : std::optional<int64_t>(it->second);
  };
  JsonWriter w;
  w.begin_array();
  for (const auto& name : list) {
    const client::TopicInfo* t = (*md)->topic(name);
    if (!t || t->error_code != 0) {
      fail(ctx, "topic describe " + name,
           client::kafka_error(t ? t->error_code : 3, "topic '" + name + "'"));
      continue;
    }
    std::set<TopicPartition> tps;
    for (const auto& p : t->partitions) tps.insert({name, p.partition});
    auto starts = end_offsets(ctx, tps, -2);
    auto ends = end_offsets(ctx, tps, -1);
    if (!starts || !ends) {
      fail(ctx, "topic describe " + name, starts ? ends.error() : starts.error());
      continue;
    }
    auto offset = [](const auto& m, const TopicPartition& tp) {
      auto it = m->find(tp);
      return it == m->end() ? int64_t{-1} : it->second;
    };
    if (o.json) {
      w.begin_object().field("name", name).field("internal", t->internal);
      w.key("partitions").begin_array();
    } else {
      std::cout << "topic " << name << " partitions " << t->partitions.size() << "\n";
    }
    for (const auto& p : t->partitions) {
      const TopicPartition tp{name, p.partition};
      const int64_t lo = offset(starts, tp), hi = offset(ends, tp);
      if (o.json) {
        w.begin_object().field("partition", p.partition).field("leader", p.leader);
        w.key("replicas").begin_array();
        for (int32_t r : p.replicas) w.value(r);
        w.end_array().key("isr").begin_array();
        for (int32_t r : p.isr) w.value(r);
        w.end_array().field("log_start_offset", lo).field("high_watermark", hi);
        w.field("records", hi >= lo && lo >= 0 ? hi - lo : int64_t{-1});
        // The leader's bytes on disk, then every replica's (null: its broker did not say).
        if (auto size = size_of(tp, p.leader)) {
          w.field("size", *size);
        } else {
          w.key("size").null();
        }
        w.key("replica_sizes").begin_array();
        for (int32_t r : p.replicas) {
          w.begin_object().field("broker", r);
          if (auto size = size_of(tp, r)) {
            w.field("size", *size);
          } else {
            w.key("size").null();
          }
          w.end_object();
        }
        w.end_array().end_object();
        continue;
      }
      auto text = [](std::optional<int64_t> n) { return n ? std::to_string(*n) : "?"; };
      std::cout << "  partition " << p.partition << " leader " << p.leader << " replicas [";
      for (size_t i = 0; i < p.replicas.size(); ++i) std::cout << (i ? "," : "") << p.replicas[i];
      std::cout << "] isr [";
      for (size_t i = 0; i < p.isr.size(); ++i) std::cout << (i ? "," : "") << p.isr[i];
      std::cout << "] start " << lo << " end " << hi << " size " << text(size_of(tp, p.leader));
      if (p.replicas.size() > 1) {  // followers may differ while they catch up
        std::cout << " replica sizes [";
        for (size_t i = 0; i < p.replicas.size(); ++i) {
          std::cout << (i ? "," : "") << p.replicas[i] << ":" << text(size_of(tp, p.replicas[i]));
        }
        std::cout << "]";
      }
      std::cout << "\n";
    }
    if (o.json) w.end_array().key("configs").begin_array();
    kafka::DescribeConfigsRequest req;
    req.resources.push_back({kResourceTopic, name, std::nullopt});
    auto r = ctx.admin().call_as<kafka::DescribeConfigsResponse>(kAnyBroker, req);
    if (!r) {
      fail(ctx, "topic describe " + name, r.error());
    } else {
      for (const auto& res : r->results) {
        for (const auto& c : res.configs) {
          const bool set = !(c.is_default || c.config_source == 5);
          if (!set && !o.all_configs) continue;  // only what was set
          if (o.json) {
            w.begin_object().field("name", c.name);
            if (c.value && !c.is_sensitive) {
              w.field("value", *c.value);
            } else {
              w.key("value").null();
            }
            w.field("source", config_source_name(c.config_source));
            w.field("read_only", c.read_only).end_object();
          } else {
            std::cout << "  config " << c.name << "="
                      << (c.is_sensitive ? "(sensitive)" : c.value.value_or(""));
            if (o.all_configs) std::cout << " (" << config_source_name(c.config_source) << ")";
            std::cout << "\n";
          }
        }
      }
    }
    if (o.json) w.end_array().end_object();
  }
  if (o.json) std::cout << w.end_array().take() << "\n";
}

// Deletes the records of TOPIC[:PARTITION] before --before OFFSET (-1: all; DeleteRecords).
void topic_delete_records(Context& ctx, const std::string& spec, int64_t before) {
  std::string topic = spec;
  int32_t only = -1;
  if (auto colon = spec.rfind(':'); colon != std::string::npos) {
    topic = spec.substr(0, colon);
    try {
      only = std::stoi(spec.substr(colon + 1));
    } catch (const std::exception&) {
      return usage_error(ctx, "topic delete-records wants TOPIC or TOPIC:PARTITION, got '" +
                                  spec + "'");
    }
  }
  auto md = ctx.admin().metadata({topic}, true);
  if (!md) return fail(ctx, "topic delete-records", md.error());
  const client::TopicInfo* t = (*md)->topic(topic);
  if (!t || t->error_code != 0) {
    return fail(ctx, "topic delete-records",
                client::kafka_error(t ? t->error_code : 3, "topic '" + topic + "'"));
  }
  if (only >= static_cast<int32_t>(t->partitions.size())) {
    return fail(ctx, "topic delete-records",
                Error{3, "topic " + topic + " has no partition " + std::to_string(only)});
  }
  std::map<int32_t, kafka::DeleteRecordsRequest> by_leader;
  for (const auto& p : t->partitions) {
    if (only >= 0 && p.partition != only) continue;
    auto& req = by_leader[p.leader];
    req.timeout_ms = 30000;
    auto* it = &client::entry_for(
        req.topics, &kafka::DeleteRecordsRequest::DeleteRecordsTopic::name, topic);
    it->partitions.push_back({p.partition, before});
  }
  for (auto& [node, req] : by_leader) {
    auto r = ctx.admin().call_as<kafka::DeleteRecordsResponse>(node, req);
    if (!r) return fail(ctx, "topic delete-records", r.error());
    for (const auto& rt : r->topics) {
      for (const auto& p : rt.partitions) {
        if (p.error_code != 0) {
          fail(ctx, "topic delete-records",
               client::kafka_error(p.error_code, topic + ":" + std::to_string(p.partition_index)));
          continue;
        }
        std::cout << topic << "\t" << p.partition_index << "\tlog start " << p.low_watermark
                  << "\n";
      }
    }
  }
}

void topic_delete(Context& ctx, const std::vector<std::string>& names) {
  kafka::DeleteTopicsRequest req;
  req.topic_names = names;
  req.timeout_ms = 30000;
  auto r = ctx.admin().call_as<kafka::DeleteTopicsResponse>(kAnyBroker, req);
  if (!r) return fail(ctx, "topic delete", r.error());
  for (const auto& res : r->responses) {
    if (auto s = item_error(res.error_code, std::nullopt, "topic delete " + res.name); !s) {
      std::cerr << "sluice: " << s.error().message << "\n";
      ctx.exit_code = kExitFailure;
    }
  }
}

// IncrementalAlterConfigs of one resource: SET each key=value of `configs`, DELETE each name
// of `unset` (back to the next source), sent to `node`.
void alter_configs(Context& ctx, int8_t type, const std::string& name, int32_t node,
                   const std::vector<std::string>& configs, const std::vector<std::string>& unset,
                   const std::string& what) {
  kafka::IncrementalAlterConfigsRequest req;
  kafka::IncrementalAlterConfigsRequest::AlterConfigsResource res;
  res.resource_type = type;
  res.resource_name = name;
  for (const auto& c : configs) {
    std::string k, v;
    if (!split_kv(c, k, v)) return usage_error(ctx, "--config wants key=value, got '" + c + "'");
    res.configs.push_back({k, 0, v});  // SET
  }
  for (const auto& k : unset) res.configs.push_back({k, 1, std::nullopt});  // DELETE
  req.resources.push_back(res);
  auto r = ctx.admin().call_as<kafka::IncrementalAlterConfigsResponse>(node, req);
  if (!r) return fail(ctx, what, r.error());
  const std::string resource = type == kResourceTopic ? "topic " + name
                               : name.empty()           ? std::string("cluster-wide default")
                                                        : "broker " + name;
  for (const auto& rr : r->responses) {
    if (auto s = item_error(rr.error_code, rr.error_message, resource); !s) {
      return fail(ctx, what, s.error());
    }
  }
}

void topic_alter(Context& ctx, const std::string& name, int32_t partitions,
                 const std::vector<std::string>& configs, const std::vector<std::string>& unset) {
  if (partitions <= 0 && configs.empty() && unset.empty()) {
    return usage_error(
        ctx, "topic alter: nothing to change (use --partitions, --config or --delete-config)");
  }
  if (partitions > 0) {
    kafka::CreatePartitionsRequest req;
    req.topics.push_back({name, partitions, std::nullopt});
    req.timeout_ms = 30000;
    auto r = ctx.admin().call_as<kafka::CreatePartitionsResponse>(kAnyBroker, req);
    if (!r) return fail(ctx, "topic alter " + name, r.error());
    for (const auto& res : r->results) {
      if (auto s = item_error(res.error_code, res.error_message, "topic alter " + name); !s) {
        return fail(ctx, "topic alter", s.error());
      }
    }
  }
  if (!configs.empty() || !unset.empty()) {
    alter_configs(ctx, kResourceTopic, name, kAnyBroker, configs, unset, "topic alter");
  }
}

// Dynamic broker configs (docs/operations.md): `--broker ID` is that broker's own settings
// (asked of that broker, as Kafka routes them), none the cluster-wide default. Without
// --set/--delete, lists them: every setting with its source for a broker, what is set for
// the default.
void cluster_config(Context& ctx, int32_t broker, const std::vector<std::string>& configs,
                    const std::vector<std::string>& unset, bool json) {
  const std::string resource = broker >= 0 ? std::to_string(broker) : "";
  const int32_t node = broker >= 0 ? broker : kAnyBroker;
  const std::string what = "cluster config";
  if (broker >= 0) {  // the brokers' addresses, to reach that one
    if (auto md = ctx.admin().metadata({}, true); !md) return fail(ctx, what, md.error());
  }
  if (!configs.empty() || !unset.empty()) {
    alter_configs(ctx, kResourceBroker, resource, node, configs, unset, what);
    return;
  }
  kafka::DescribeConfigsRequest req;
  req.resources.push_back({kResourceBroker, resource, std::nullopt});
  auto r = ctx.admin().call_as<kafka::DescribeConfigsResponse>(node, req);
  if (!r) return fail(ctx, what, r.error());
  JsonWriter w;
  w.begin_array();
  for (const auto& res : r->results) {
    if (auto s = item_error(res.error_code, res.error_message, resource.empty() ? "default" : "broker " + resource); !s) {
      return fail(ctx, what, s.error());
    }
    for (const auto& c : res.configs) {
      const std::string value = c.is_sensitive ? "(sensitive)" : c.value.value_or("");
      if (json) {
        w.begin_object().field("name", c.name).field("value", value);
        w.field("source", config_source_name(c.config_source));
        w.field("read_only", c.read_only).end_object();
      } else {
        std::cout << c.name << "=" << value << " (" << config_source_name(c.config_source)
                  << (c.read_only ? ", read-only" : "") << ")\n";
      }
    }
  }
  if (json) std::cout << w.end_array().take() << "\n";
}

void cluster_info(Context& ctx, bool json) {
  auto md = ctx.admin().metadata({}, true, true);
  if (!md) return fail(ctx, "cluster info", md.error());
  // The controller quorum (KRaft's __cluster_metadata-0): its leader, term and members.
  kafka::DescribeQuorumRequest q;
  q.topics.resize(1);
  q.topics[0].topic_name = "__cluster_metadata";
  q.topics[0].partitions.resize(1);
  auto quorum = ctx.admin().call_as<kafka::DescribeQuorumResponse>(kAnyBroker, q);
  JsonWriter w;
  w.begin_object().field("cluster_id", (*md)->cluster_id);
  if (!json) std::cout << "cluster id " << (*md)->cluster_id << "\n";
  std::map<int32_t, std::string> role;  // voter / observer
  if (quorum && !quorum->topics.empty() && !quorum->topics[0].partitions.empty() &&
      quorum->topics[0].partitions[0].error_code == 0) {
    const auto& p = quorum->topics[0].partitions[0];
    if (json) {
      w.field("controller_leader", p.leader_id).field("controller_term", p.leader_epoch);
      w.field("controller_committed_index", p.high_watermark);
    } else {
      std::cout << "controller leader " << p.leader_id << " term " << p.leader_epoch
                << " (committed index " << p.high_watermark << ")\n";
    }
    for (const auto& v : p.current_voters) role[v.replica_id] = "voter";
    for (const auto& o : p.observers) role[o.replica_id] = "observer";
  } else if (json) {
    w.field("controller_leader", (*md)->controller_id);
  } else {
    std::cout << "controller " << (*md)->controller_id << "\n";
  }
  std::map<int32_t, const client::BrokerInfo*> live;
  for (const auto& b : (*md)->brokers) live[b.node_id] = &b;
  for (const auto& [id, r] : role) live.emplace(id, nullptr);
  if (json) w.key("brokers").begin_array();
  for (const auto& [id, b] : live) {
    if (json) {
      w.begin_object().field("node_id", id).field("online", b != nullptr);
      if (b) w.field("host", b->host).field("port", b->port);
      if (b && b->rack) w.field("rack", *b->rack);
      if (role.count(id)) w.field("role", role[id]);
      w.end_object();
      continue;
    }
    std::cout << "broker " << id;
    if (b) {
      std::cout << " " << b->host << ":" << b->port;
      if (b->rack) std::cout << " rack " << *b->rack;
      std::cout << " online";
    } else {
      std::cout << " fenced (offline)";
    }
    if (role.count(id)) std::cout << " " << role[id];
    std::cout << "\n";
  }
  if (json) {
    w.end_array().field("topics", static_cast<int64_t>((*md)->topics.size()));
    std::cout << w.end_object().take() << "\n";
  } else {
    std::cout << "topics " << (*md)->topics.size() << "\n";
  }
}

// ---- groups ----------------------------------------------------------------------------

Result<int32_t> coordinator_of(Context& ctx, const std::string& group) {
  kafka::FindCoordinatorRequest req;
  req.key = group;
  auto r = ctx.admin().call_as<kafka::FindCoordinatorResponse>(kAnyBroker, req);
  if (!r) return unexpected(r.error());
  if (r->error_code != 0)
    return unexpected(client::kafka_error(r->error_code, "FindCoordinator " + group));
  (void)ctx.admin().metadata({}, true);
  return r->node_id;
}

// Committed offsets of a group: every partition it has an offset for.
Result<std::map<TopicPartition, int64_t>> group_offsets(Context& ctx, int32_t coord,
                                                        const std::string& group) {
  kafka::OffsetFetchRequest req;
  req.group_id = group;
  req.topics = std::nullopt;  // all
  auto r = ctx.admin().call_as<kafka::OffsetFetchResponse>(coord, req);
  if (!r) return unexpected(r.error());
  if (r->error_code != 0)
    return unexpected(client::kafka_error(r->error_code, "OffsetFetch " + group));
  std::map<TopicPartition, int64_t> out;
  for (const auto& t : r->topics) {
    for (const auto& p : t.partitions) {
      if (p.committed_offset >= 0) out[{t.name, p.partition_index}] = p.committed_offset;
    }
  }
  return out;
}

Result<std::map<TopicPartition, int64_t>> end_offsets(Context& ctx,
                                                      const std::set<TopicPartition>& tps,
                                                      int64_t timestamp) {
  std::set<std::string> topics;
  for (const auto& tp : tps) topics.insert(tp.topic);
  auto md = ctx.admin().metadata(std::vector<std::string>(topics.begin(), topics.end()), true);
  if (!md) return unexpected(md.error());
  std::map<int32_t, kafka::ListOffsetsRequest> by_leader;
  for (const auto& tp : tps) {
    const client::TopicInfo* t = (*md)->topic(tp.topic);
    if (!t || tp.partition >= static_cast<int32_t>(t->partitions.size())) continue;
    auto& req = by_leader[t->partitions[tp.partition].leader];
    req.replica_id = -1;
    auto* it = &client::entry_for(req.topics, &kafka::ListOffsetsRequest::ListOffsetsTopic::name,
                                  tp.topic);
    kafka::ListOffsetsRequest::ListOffsetsPartition p;
    p.partition_index = tp.partition;
    p.timestamp = timestamp;
    it->partitions.push_back(p);
  }
  std::map<TopicPartition, int64_t> out;
  for (auto& [node, req] : by_leader) {
    auto r = ctx.admin().call_as<kafka::ListOffsetsResponse>(node, req);
    if (!r) return unexpected(r.error());
    for (const auto& t : r->topics) {
      for (const auto& p : t.partitions) {
        if (p.error_code == 0) out[{t.name, p.partition_index}] = p.offset;
      }
    }
  }
  return out;
}

void group_list(Context& ctx, bool json) {
  auto md = ctx.admin().metadata({}, true, true);
  if (!md) return fail(ctx, "group list", md.error());
  std::set<std::string> groups;
  for (const auto& b : (*md)->brokers) {
    auto r = ctx.admin().call_as<kafka::ListGroupsResponse>(b.node_id, kafka::ListGroupsRequest{});
    if (!r) return fail(ctx, "group list", r.error());
    if (r->error_code != 0)
      return fail(ctx, "group list", client::kafka_error(r->error_code, "ListGroups"));
    for (const auto& g : r->groups) groups.insert(g.group_id);
  }
  if (json) {
    JsonWriter w;
    w.begin_array();
    for (const auto& g : groups) w.value(g);
    std::cout << w.end_array().take() << "\n";
    return;
  }
  for (const auto& g : groups) std::cout << g << "\n";
}

void group_describe(Context& ctx, const std::string& group, bool json) {
  auto coord = coordinator_of(ctx, group);
  if (!coord) return fail(ctx, "group describe " + group, coord.error());
  kafka::DescribeGroupsRequest req;
  req.groups = {group};
  auto r = ctx.admin().call_as<kafka::DescribeGroupsResponse>(*coord, req);
  if (!r) return fail(ctx, "group describe " + group, r.error());
  auto offsets = group_offsets(ctx, *coord, group);
  if (!offsets) return fail(ctx, "group describe " + group, offsets.error());
  std::map<TopicPartition, std::string> owner;
  JsonWriter w;
  w.begin_object();
  for (const auto& g : r->groups) {
    if (g.error_code != 0)
      return fail(ctx, "group describe", client::kafka_error(g.error_code, group));
    // Kafka answers "Dead" for a group it does not know: no members, no offsets.
    if (g.group_state == "Dead" && g.members.empty() && offsets->empty()) {
      return fail(ctx, "group describe",
                  Error{static_cast<int>(kafka::ErrorCode::kGroupIdNotFound),
                        "group '" + group + "' does not exist (list groups with `sluice group "
                        "list`)"});
    }
    if (json) {
      w.field("group", g.group_id).field("state", g.group_state);
      w.field("protocol", g.protocol_data).key("members").begin_array();
    } else {
      std::cout << "group " << g.group_id << " state " << g.group_state << " protocol "
                << (g.protocol_data.empty() ? "-" : g.protocol_data) << " members "
                << g.members.size() << "\n";
    }
    for (const auto& m : g.members) {
      if (json) {
        w.begin_object().field("member_id", m.member_id).field("client_id", m.client_id);
        w.field("host", m.client_host).end_object();
      } else {
        std::cout << "  member " << m.member_id << " client " << m.client_id << " host "
                  << m.client_host << "\n";
      }
      std::vector<TopicPartition> tps;
      if (consumer::decode_assignment(Bytes(m.member_assignment), tps)) {
        for (const auto& tp : tps) owner[tp] = m.member_id;
      }
    }
  }
  std::set<TopicPartition> tps;
  std::set<std::string> topics;
  for (const auto& [tp, o] : *offsets) topics.insert(tp.topic);
  for (const auto& [tp, m] : owner) topics.insert(tp.topic);
  if (!topics.empty()) {  // every partition of the topics the group consumes
    auto md = ctx.admin().metadata(std::vector<std::string>(topics.begin(), topics.end()), true);
    if (!md) return fail(ctx, "group describe " + group, md.error());
    for (const auto& t : topics) {
      const client::TopicInfo* ti = (*md)->topic(t);
      if (!ti) continue;
      for (const auto& p : ti->partitions) tps.insert({t, p.partition});
    }
  }
  auto ends = end_offsets(ctx, tps, -1);
  if (!ends) return fail(ctx, "group describe " + group, ends.error());
  if (json) {
    w.end_array().key("partitions").begin_array();
    for (const auto& tp : tps) {
      auto c = offsets->find(tp);
      auto e = ends->find(tp);
      auto o = owner.find(tp);
      w.begin_object().field("topic", tp.topic).field("partition", tp.partition);
      if (c != offsets->end()) {
        w.field("committed", c->second);
      } else {
        w.key("committed").null();
      }
      if (e != ends->end()) {
        w.field("end", e->second);
      } else {
        w.key("end").null();
      }
      if (c != offsets->end() && e != ends->end()) {
        w.field("lag", std::max<int64_t>(0, e->second - c->second));
      } else {
        w.key("lag").null();
      }
      if (o != owner.end()) {
        w.field("member", o->second);
      } else {
        w.key("member").null();
      }
      w.end_object();
    }
    std::cout << w.end_array().end_object().take() << "\n";
    return;
  }
  std::cout << std::left << std::setw(24) << "TOPIC" << std::setw(10) << "PARTITION"
            << std::setw(14) << "COMMITTED" << std::setw(14) << "END" << std::setw(10) << "LAG"
            << "MEMBER\n";
  for (const auto& tp : tps) {
    auto c = offsets->find(tp);
    auto e = ends->find(tp);
    std::string committed = c == offsets->end() ? "-" : std::to_string(c->second);
    std::string end = e == ends->end() ? "-" : std::to_string(e->second);
    std::string lag = (c != offsets->end() && e != ends->end())
                          ? std::to_string(std::max<int64_t>(0, e->second - c->second))
                          : "-";
    auto o = owner.find(tp);
    std::cout << std::left << std::setw(24) << tp.topic << std::setw(10) << tp.partition
              << std::setw(14) << committed << std::setw(14) << end << std::setw(10) << lag
              << (o == owner.end() ? "-" : o->second) << "\n";
  }
}

struct ResetOptions {
  std::string group;
  std::vector<std::string> topics;
  bool to_earliest = false;
  bool to_latest = false;
  int64_t to_offset = -1;
  int64_t to_timestamp = -1;
  std::optional<int64_t> shift_by;  // from the committed offset (+ forward, - back)
  std::string by_duration;          // "1h": to the first offset at/after now - 1h
  std::vector<int32_t> partitions;  // only these (default: every partition of the topics)
  bool dry_run = false;
};

void group_reset(Context& ctx, const ResetOptions& opts) {
  ResetOptions o = opts;
  int modes = o.to_earliest + o.to_latest + (o.to_offset >= 0) + (o.to_timestamp >= 0) +
              o.shift_by.has_value() + !o.by_duration.empty();
  if (modes != 1) {
    return usage_error(ctx,
                       "group reset-offsets: give exactly one of --to-earliest, --to-latest, "
                       "--to-offset N, --to-timestamp MS, --shift-by N, --by-duration D");
  }
  if (!o.by_duration.empty()) {
    const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    auto t = parse_time("-" + o.by_duration, now);
    if (!t) {
      return usage_error(ctx, "group reset-offsets: --by-duration wants 30s, 15m, 1h, 2d, got '" +
                                  o.by_duration + "'");
    }
    o.to_timestamp = *t;
  }
  auto md = ctx.admin().metadata(o.topics, true);
  if (!md) return fail(ctx, "group reset-offsets", md.error());
  std::set<TopicPartition> tps;
  for (const auto& name : o.topics) {
    const client::TopicInfo* t = (*md)->topic(name);
    if (!t || t->error_code != 0) {
      return fail(ctx, "group reset-offsets",
                  client::kafka_error(t ? t->error_code : 3, "topic '" + name + "'"));
    }
    for (const auto& p : t->partitions) {
      if (o.partitions.empty() ||
          std::find(o.partitions.begin(), o.partitions.end(), p.partition) != o.partitions.end())
        tps.insert({name, p.partition});
    }
    for (int32_t p : o.partitions) {
      if (p < 0 || p >= static_cast<int32_t>(t->partitions.size())) {
        return fail(ctx, "group reset-offsets",
                    Error{3, "topic " + name + " has no partition " + std::to_string(p)});
      }
    }
  }
  std::map<TopicPartition, int64_t> target;
  if (o.shift_by || o.to_offset >= 0) {
    // Clamped to each partition's valid range [log start, end], as Kafka's tool does: an
    // offset outside it would only send consumers to their reset policy. --shift-by moves
    // from the committed offset (the log start where there is none).
    auto starts = end_offsets(ctx, tps, -2);
    if (!starts) return fail(ctx, "group reset-offsets", starts.error());
    auto ends = end_offsets(ctx, tps, -1);
    if (!ends) return fail(ctx, "group reset-offsets", ends.error());
    std::map<TopicPartition, int64_t> committed;
    if (o.shift_by) {
      auto coord = coordinator_of(ctx, o.group);
      if (!coord) return fail(ctx, "group reset-offsets", coord.error());
      auto c = group_offsets(ctx, *coord, o.group);
      if (!c) return fail(ctx, "group reset-offsets", c.error());
      committed = std::move(*c);
    }
    for (const auto& tp : tps) {
      const int64_t lo = starts->at(tp);
      const int64_t hi = ends->at(tp);
      int64_t want = o.to_offset;
      if (o.shift_by) {
        auto c = committed.find(tp);
        want = (c == committed.end() ? lo : c->second) + *o.shift_by;
      }
      const int64_t off = std::clamp(want, lo, std::max(lo, hi));
      if (off != want && !o.shift_by) {
        std::cerr << "sluice: " << tp.topic << "-" << tp.partition << ": offset " << want
                  << " is outside [" << lo << ", " << hi << "]; using " << off << "\n";
      }
      target[tp] = off;
    }
  } else {
    auto r = end_offsets(ctx, tps, o.to_earliest ? -2 : o.to_latest ? -1 : o.to_timestamp);
    if (!r) return fail(ctx, "group reset-offsets", r.error());
    target = *r;
    if (o.to_timestamp >= 0) {  // partitions with nothing at/after the timestamp: the end
      auto ends = end_offsets(ctx, tps, -1);
      if (!ends) return fail(ctx, "group reset-offsets", ends.error());
      for (auto& [tp, off] : target) {
        if (off < 0) off = ends->at(tp);
      }
    }
  }
  for (const auto& [tp, off] : target)
    std::cout << tp.topic << "\t" << tp.partition << "\t" << off << "\n";
  if (o.dry_run) return;
  auto coord = coordinator_of(ctx, o.group);
  if (!coord) return fail(ctx, "group reset-offsets", coord.error());
  kafka::OffsetCommitRequest req;
  req.group_id = o.group;
  req.generation_id_or_member_epoch = -1;
  for (const auto& [tp, off] : target) {
    auto* it = &client::entry_for(
        req.topics, &kafka::OffsetCommitRequest::OffsetCommitRequestTopic::name, tp.topic);
    kafka::OffsetCommitRequest::OffsetCommitRequestPartition p;
    p.partition_index = tp.partition;
    p.committed_offset = off;
    it->partitions.push_back(p);
  }
  auto r = ctx.admin().call_as<kafka::OffsetCommitResponse>(*coord, req);
  if (!r) return fail(ctx, "group reset-offsets", r.error());
  for (const auto& t : r->topics) {
    for (const auto& p : t.partitions) {
      if (p.error_code == static_cast<int16_t>(kafka::ErrorCode::kUnknownMemberId)) {
        return fail(ctx, "group reset-offsets",
                    Error{p.error_code,
                          "group '" + o.group + "' has active members: stop its consumers first"});
      }
      if (p.error_code != 0)
        return fail(ctx, "group reset-offsets", client::kafka_error(p.error_code, t.name));
    }
  }
}

void group_delete(Context& ctx, const std::vector<std::string>& groups) {
  for (const auto& g : groups) {
    auto coord = coordinator_of(ctx, g);
    if (!coord) return fail(ctx, "group delete " + g, coord.error());
    kafka::DeleteGroupsRequest req;
    req.groups_names = {g};
    auto r = ctx.admin().call_as<kafka::DeleteGroupsResponse>(*coord, req);
    if (!r) return fail(ctx, "group delete " + g, r.error());
    for (const auto& res : r->results) {
      if (res.error_code != 0)
        fail(ctx, "group delete",
             client::kafka_error(res.error_code, "group '" + res.group_id + "'"));
    }
  }
}

}  // namespace

void add_format_option(CLI::App& cmd, std::string& format) {
  cmd.add_option("--format", format, "text or json")
      ->capture_default_str()
      ->check(CLI::IsMember({"text", "json"}));
}

void register_topic(CLI::App& app, Context& ctx) {
  auto* topic = app.add_subcommand("topic", "Create, list, describe, alter and delete topics");
  topic->require_subcommand(1);

  struct Create {
    std::string name;
    int32_t partitions = 1;
    int16_t replication = 1;
    std::vector<std::string> configs;
  };
  auto c = std::make_shared<Create>();
  auto* create = topic->add_subcommand("create", "Create a topic");
  create->add_option("name", c->name, "Topic name")->required();
  create->add_option("-p,--partitions", c->partitions, "Partitions")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000, "a number >= 1"));
  create->add_option("-r,--replication-factor", c->replication, "Replicas per partition")
      ->capture_default_str();
  create->add_option("-c,--config", c->configs, "Topic setting key=value (repeatable)");
  create->callback(
      [&ctx, c] { topic_create(ctx, c->name, c->partitions, c->replication, c->configs); });

  auto list_json = std::make_shared<std::string>("text");
  auto* list = topic->add_subcommand("list", "List topics, one per line");
  add_format_option(*list, *list_json);
  list->callback([&ctx, list_json] { topic_list(ctx, *list_json == "json"); });

  auto d = std::make_shared<DescribeOptions>();
  auto dformat = std::make_shared<std::string>("text");
  auto* describe = topic->add_subcommand(
      "describe",
      "Partitions (leaders, replicas, log start and end offsets, sizes on disk) and settings");
  describe->add_option("names", d->names, "Topics (default: all)");
  describe->add_flag("-a,--all-configs", d->all_configs,
                     "Every setting with its source, not only those set on the topic");
  add_format_option(*describe, *dformat);
  describe->callback([&ctx, d, dformat] {
    d->json = *dformat == "json";
    topic_describe(ctx, *d);
  });

  struct DeleteRecords {
    std::string spec;
    int64_t before = -1;
  };
  auto dr = std::make_shared<DeleteRecords>();
  auto* delete_records = topic->add_subcommand(
      "delete-records", "Delete the records before an offset (moves the log start; DeleteRecords)");
  delete_records->add_option("topic", dr->spec, "TOPIC or TOPIC:PARTITION")->required();
  delete_records->add_option("--before", dr->before,
                             "First offset to keep (-1: the end, i.e. delete everything)")
      ->required();
  delete_records->callback([&ctx, dr] { topic_delete_records(ctx, dr->spec, dr->before); });

  auto del_names = std::make_shared<std::vector<std::string>>();
  auto* del = topic->add_subcommand("delete", "Delete topics");
  del->add_option("names", *del_names, "Topics")->required();
  del->callback([&ctx, del_names] { topic_delete(ctx, *del_names); });

  struct Alter {
    std::string name;
    int32_t partitions = 0;
    std::vector<std::string> configs;
    std::vector<std::string> unset;
  };
  auto a = std::make_shared<Alter>();
  auto* alter = topic->add_subcommand("alter", "Add partitions or change settings");
  alter->add_option("name", a->name, "Topic name")->required();
  alter->add_option("-p,--partitions", a->partitions, "New total partition count (can only grow)");
  alter->add_option("-c,--config", a->configs, "Set key=value (repeatable)");
  alter->add_option("--delete-config", a->unset, "Reset a setting to its default (repeatable)");
  alter->callback([&ctx, a] { topic_alter(ctx, a->name, a->partitions, a->configs, a->unset); });
}

void register_group(CLI::App& app, Context& ctx) {
  auto* group = app.add_subcommand("group", "Inspect and manage consumer groups");
  group->require_subcommand(1);
  auto list_format = std::make_shared<std::string>("text");
  auto* list = group->add_subcommand("list", "List consumer groups");
  add_format_option(*list, *list_format);
  list->callback([&ctx, list_format] { group_list(ctx, *list_format == "json"); });

  auto name = std::make_shared<std::string>();
  auto dformat = std::make_shared<std::string>("text");
  auto* describe =
      group->add_subcommand("describe", "Members, committed offsets and lag per partition");
  describe->add_option("group", *name, "Group id")->required();
  add_format_option(*describe, *dformat);
  describe->callback([&ctx, name, dformat] { group_describe(ctx, *name, *dformat == "json"); });

  auto r = std::make_shared<ResetOptions>();
  auto* reset = group->add_subcommand("reset-offsets",
                                      "Set a group's committed offsets (group must be empty)");
  reset->add_option("group", r->group, "Group id")->required();
  reset->add_option("-t,--topic", r->topics, "Topics (repeatable)")->required();
  reset->add_flag("--to-earliest", r->to_earliest, "To the log start");
  reset->add_flag("--to-latest", r->to_latest, "To the end");
  reset->add_option("--to-offset", r->to_offset, "To this offset");
  reset->add_option("--to-timestamp", r->to_timestamp,
                    "To the first offset at/after this time (ms)");
  reset->add_option("--shift-by", r->shift_by,
                    "Move the committed offsets by N (negative: back), within the log");
  reset->add_option("--by-duration", r->by_duration,
                    "To the first offset at/after this long ago: 30s, 15m, 1h, 2d");
  reset->add_option("-p,--partition", r->partitions,
                    "Only these partitions of the topics (repeatable)");
  reset->add_flag("--dry-run", r->dry_run, "Print the new offsets without committing");
  reset->callback([&ctx, r] { group_reset(ctx, *r); });

  auto groups = std::make_shared<std::vector<std::string>>();
  auto* del = group->add_subcommand("delete", "Delete empty groups and their offsets");
  del->add_option("groups", *groups, "Group ids")->required();
  del->callback([&ctx, groups] { group_delete(ctx, *groups); });
}

void register_cluster(CLI::App& app, Context& ctx) {
  auto* cluster = app.add_subcommand("cluster", "Cluster information");
  cluster->require_subcommand(1);
  auto format = std::make_shared<std::string>("text");
  auto* info = cluster->add_subcommand("info", "Cluster id, controller, brokers");
  add_format_option(*info, *format);
  info->callback([&ctx, format] { cluster_info(ctx, *format == "json"); });
  struct ConfigArgs {
    int32_t broker = -1;
    std::vector<std::string> set, unset;
    std::string format = "text";
  };
  auto c = std::make_shared<ConfigArgs>();
  auto* config = cluster->add_subcommand(
      "config", "Dynamic broker settings: list them, or change them at run time");
  config->add_option("--broker", c->broker,
                     "This broker's own settings (default: the cluster-wide default)");
  config->add_option("-c,--config,--set", c->set, "Set key=value (repeatable)");
  config->add_option("--delete-config,--delete", c->unset,
                     "Remove a dynamic setting: back to the next source (repeatable)");
  add_format_option(*config, c->format);
  config->callback(
      [&ctx, c] { cluster_config(ctx, c->broker, c->set, c->unset, c->format == "json"); });
  register_cluster_health(*cluster, ctx);
  register_cluster_moves(*cluster, ctx);
}

}  // namespace sluice::cli
