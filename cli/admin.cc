// sluice topic ..., sluice group ..., sluice cluster info: admin requests through the client.
#include <algorithm>
#include <iomanip>
#include <iostream>
#include <map>
#include <set>

#include "cli/cli.h"
#include "consumer/assignor.h"
#include "protocol/error_codes.h"

namespace sluice::cli {

namespace {

using client::kAnyBroker;

constexpr int8_t kResourceTopic = 2;

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

void topic_list(Context& ctx) {
  auto md = ctx.admin().metadata({}, true, true);
  if (!md) return fail(ctx, "topic list", md.error());
  for (const auto& [name, t] : (*md)->topics) std::cout << name << "\n";
}

void topic_describe(Context& ctx, const std::vector<std::string>& names) {
  auto md = ctx.admin().metadata(names, true, names.empty());
  if (!md) return fail(ctx, "topic describe", md.error());
  std::vector<std::string> list = names;
  if (list.empty()) {
    for (const auto& [name, t] : (*md)->topics) list.push_back(name);
  }
  for (const auto& name : list) {
    const client::TopicInfo* t = (*md)->topic(name);
    if (!t || t->error_code != 0) {
      fail(ctx, "topic describe " + name,
           client::kafka_error(t ? t->error_code : 3, "topic '" + name + "'"));
      continue;
    }
    std::cout << "topic " << name << " partitions " << t->partitions.size() << "\n";
    for (const auto& p : t->partitions) {
      std::cout << "  partition " << p.partition << " leader " << p.leader << " replicas [";
      for (size_t i = 0; i < p.replicas.size(); ++i) std::cout << (i ? "," : "") << p.replicas[i];
      std::cout << "] isr [";
      for (size_t i = 0; i < p.isr.size(); ++i) std::cout << (i ? "," : "") << p.isr[i];
      std::cout << "]\n";
    }
    kafka::DescribeConfigsRequest req;
    req.resources.push_back({kResourceTopic, name, std::nullopt});
    auto r = ctx.admin().call_as<kafka::DescribeConfigsResponse>(kAnyBroker, req);
    if (r) {
      for (const auto& res : r->results) {
        for (const auto& c : res.configs) {
          if (c.is_default || c.config_source == 5) continue;  // only what was set
          std::cout << "  config " << c.name << "=" << c.value.value_or("") << "\n";
        }
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
    kafka::IncrementalAlterConfigsRequest req;
    kafka::IncrementalAlterConfigsRequest::AlterConfigsResource res;
    res.resource_type = kResourceTopic;
    res.resource_name = name;
    for (const auto& c : configs) {
      std::string k, v;
      if (!split_kv(c, k, v)) return usage_error(ctx, "--config wants key=value, got '" + c + "'");
      res.configs.push_back({k, 0, v});  // SET
    }
    for (const auto& k : unset) res.configs.push_back({k, 1, std::nullopt});  // DELETE
    req.resources.push_back(res);
    auto r = ctx.admin().call_as<kafka::IncrementalAlterConfigsResponse>(kAnyBroker, req);
    if (!r) return fail(ctx, "topic alter " + name, r.error());
    for (const auto& rr : r->responses) {
      if (auto s = item_error(rr.error_code, rr.error_message, "topic alter " + name); !s) {
        return fail(ctx, "topic alter", s.error());
      }
    }
  }
}

void cluster_info(Context& ctx) {
  auto md = ctx.admin().metadata({}, true, true);
  if (!md) return fail(ctx, "cluster info", md.error());
  // The controller quorum (KRaft's __cluster_metadata-0): its leader, term and members.
  kafka::DescribeQuorumRequest q;
  q.topics.resize(1);
  q.topics[0].topic_name = "__cluster_metadata";
  q.topics[0].partitions.resize(1);
  auto quorum = ctx.admin().call_as<kafka::DescribeQuorumResponse>(kAnyBroker, q);
  std::cout << "cluster id " << (*md)->cluster_id << "\n";
  std::map<int32_t, std::string> role;  // voter / observer
  if (quorum && !quorum->topics.empty() && !quorum->topics[0].partitions.empty() &&
      quorum->topics[0].partitions[0].error_code == 0) {
    const auto& p = quorum->topics[0].partitions[0];
    std::cout << "controller leader " << p.leader_id << " term " << p.leader_epoch
              << " (committed index " << p.high_watermark << ")\n";
    for (const auto& v : p.current_voters) role[v.replica_id] = "voter";
    for (const auto& o : p.observers) role[o.replica_id] = "observer";
  } else {
    std::cout << "controller " << (*md)->controller_id << "\n";
  }
  std::map<int32_t, const client::BrokerInfo*> live;
  for (const auto& b : (*md)->brokers) live[b.node_id] = &b;
  for (const auto& [id, r] : role) live.emplace(id, nullptr);
  for (const auto& [id, b] : live) {
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
  std::cout << "topics " << (*md)->topics.size() << "\n";
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

void group_list(Context& ctx) {
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
  for (const auto& g : groups) std::cout << g << "\n";
}

void group_describe(Context& ctx, const std::string& group) {
  auto coord = coordinator_of(ctx, group);
  if (!coord) return fail(ctx, "group describe " + group, coord.error());
  kafka::DescribeGroupsRequest req;
  req.groups = {group};
  auto r = ctx.admin().call_as<kafka::DescribeGroupsResponse>(*coord, req);
  if (!r) return fail(ctx, "group describe " + group, r.error());
  std::map<TopicPartition, std::string> owner;
  for (const auto& g : r->groups) {
    if (g.error_code != 0)
      return fail(ctx, "group describe", client::kafka_error(g.error_code, group));
    std::cout << "group " << g.group_id << " state " << g.group_state << " protocol "
              << (g.protocol_data.empty() ? "-" : g.protocol_data) << " members "
              << g.members.size() << "\n";
    for (const auto& m : g.members) {
      std::cout << "  member " << m.member_id << " client " << m.client_id << " host "
                << m.client_host << "\n";
      std::vector<TopicPartition> tps;
      if (consumer::decode_assignment(Bytes(m.member_assignment), tps)) {
        for (const auto& tp : tps) owner[tp] = m.member_id;
      }
    }
  }
  auto offsets = group_offsets(ctx, *coord, group);
  if (!offsets) return fail(ctx, "group describe " + group, offsets.error());
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
  bool dry_run = false;
};

void group_reset(Context& ctx, const ResetOptions& o) {
  int modes = o.to_earliest + o.to_latest + (o.to_offset >= 0) + (o.to_timestamp >= 0);
  if (modes != 1) {
    return usage_error(ctx,
                       "group reset-offsets: give exactly one of --to-earliest, --to-latest, "
                       "--to-offset N, --to-timestamp MS");
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
    for (const auto& p : t->partitions) tps.insert({name, p.partition});
  }
  std::map<TopicPartition, int64_t> target;
  if (o.to_offset >= 0) {
    // Clamped to each partition's valid range [log start, end], as Kafka's tool does: an
    // offset outside it would only send consumers to their reset policy.
    auto starts = end_offsets(ctx, tps, -2);
    if (!starts) return fail(ctx, "group reset-offsets", starts.error());
    auto ends = end_offsets(ctx, tps, -1);
    if (!ends) return fail(ctx, "group reset-offsets", ends.error());
    for (const auto& tp : tps) {
      const int64_t lo = starts->at(tp);
      const int64_t hi = ends->at(tp);
      const int64_t off = std::clamp(o.to_offset, lo, std::max(lo, hi));
      if (off != o.to_offset) {
        std::cerr << "sluice: " << tp.topic << "-" << tp.partition << ": offset " << o.to_offset
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
      ->check(CLI::PositiveNumber);
  create->add_option("-r,--replication-factor", c->replication, "Replicas per partition")
      ->capture_default_str();
  create->add_option("-c,--config", c->configs, "Topic setting key=value (repeatable)");
  create->callback(
      [&ctx, c] { topic_create(ctx, c->name, c->partitions, c->replication, c->configs); });

  topic->add_subcommand("list", "List topics, one per line")->callback([&ctx] { topic_list(ctx); });

  auto names = std::make_shared<std::vector<std::string>>();
  auto* describe = topic->add_subcommand("describe", "Partitions, leaders, replicas and settings");
  describe->add_option("names", *names, "Topics (default: all)");
  describe->callback([&ctx, names] { topic_describe(ctx, *names); });

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
  group->add_subcommand("list", "List consumer groups")->callback([&ctx] { group_list(ctx); });

  auto name = std::make_shared<std::string>();
  auto* describe =
      group->add_subcommand("describe", "Members, committed offsets and lag per partition");
  describe->add_option("group", *name, "Group id")->required();
  describe->callback([&ctx, name] { group_describe(ctx, *name); });

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
  cluster->add_subcommand("info", "Cluster id, controller, brokers")->callback([&ctx] {
    cluster_info(ctx);
  });
  register_cluster_health(*cluster, ctx);
  register_cluster_moves(*cluster, ctx);
}

}  // namespace sluice::cli
