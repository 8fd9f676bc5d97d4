#include "broker/topic_registry.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <future>

#include "common/random.h"

namespace sluice::broker {
namespace {

using kafka::ErrorCode;

constexpr int32_t kPartitionsMax = 100000;
constexpr auto kControllerTimeout = std::chrono::milliseconds(30000);

}  // namespace

Result<void, TopicError> TopicRegistry::validate_name(const std::string& name) {
  if (name.empty())
    return unexpected(TopicError{ErrorCode::kInvalidTopicException, "empty topic name"});
  if (name == "." || name == "..") {
    return unexpected(
        TopicError{ErrorCode::kInvalidTopicException, "topic name cannot be '.' or '..'"});
  }
  if (name.size() > 249) {
    return unexpected(
        TopicError{ErrorCode::kInvalidTopicException, "topic name is longer than 249 characters"});
  }
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return unexpected(TopicError{ErrorCode::kInvalidTopicException,
                                   "topic name '" + name +
                                       "' has characters other than ASCII letters, digits, "
                                       "'.', '_' and '-'"});
    }
  }
  return {};
}

bool TopicRegistry::is_internal(const std::string& name) {
  return name == "__consumer_offsets" || name == "__transaction_state";
}

Result<void, TopicError> TopicRegistry::check_client_may_change(const std::string& name) {
  if (!is_internal(name)) return {};
  return unexpected(TopicError{ErrorCode::kTopicAuthorizationFailed,
                               "'" + name + "' is an internal topic, managed by the broker"});
}

std::optional<TopicInfo> TopicRegistry::find(const std::string& name) const {
  auto snap = snapshot();
  const TopicInfo* t = snap->find(name);
  if (!t) return std::nullopt;
  return *t;
}

void TopicRegistry::set_partitions_max(int64_t count) { partitions_max_ = count; }

Result<void, TopicError> TopicRegistry::check_partition_budget(int64_t more, int32_t rf) const {
  auto snap = snapshot();
  const int32_t self = cluster_.node_id();
  int64_t held = 0;
  int64_t live = 0;
  for (const auto& [id, b] : snap->brokers) live += b.fenced ? 0 : 1;
  for (const auto& [name, t] : snap->topics) {
    for (const auto& p : t.parts) {
      held += std::count(p.replicas.begin(), p.replicas.end(), self) > 0 ? 1 : 0;
    }
  }
  const int64_t mine =
      (more * std::max(1, rf) + std::max<int64_t>(1, live) - 1) / std::max<int64_t>(1, live);
  if (held + mine <= partitions_max_.load()) return {};
  return unexpected(TopicError{ErrorCode::kInvalidPartitions,
                               "broker " + std::to_string(self) + " holds " + std::to_string(held) +
                                   " partitions; " + std::to_string(mine) +
                                   " more would pass its limit of " +
                                   std::to_string(partitions_max_.load()) +
                                   " (max.partitions)"});
}

TopicInfo TopicRegistry::to_topic_info(const cluster::pb::Topic& t) {
  TopicInfo info;
  info.name = t.name();
  info.partitions = t.partitions_size();
  info.replication_factor = static_cast<int16_t>(t.replication_factor());
  info.configs.insert(t.configs().begin(), t.configs().end());
  if (t.topic_id().size() == 16) std::memcpy(info.id.data(), t.topic_id().data(), 16);
  info.internal = t.internal();
  for (const auto& p : t.partitions()) {
    PartitionInfo pi;
    pi.replicas.assign(p.replicas().begin(), p.replicas().end());
    pi.leader = p.leader();
    pi.leader_epoch = p.leader_epoch();
    pi.adding.assign(p.adding().begin(), p.adding().end());
    pi.removing.assign(p.removing().begin(), p.removing().end());
    pi.elect_preferred = p.elect_preferred();
    pi.isr.assign(p.isr().begin(), p.isr().end());
    info.parts.push_back(std::move(pi));
  }
  return info;
}

std::shared_ptr<const TopicsSnapshot> TopicRegistry::snapshot() const {
  std::lock_guard lock(mutex_);
  return snapshot_;
}

std::shared_ptr<const TopicsSnapshot> TopicRegistry::publish(const cluster::pb::Image& image) {
  auto next = std::make_shared<TopicsSnapshot>();
  next->version = image.applied_index();
  next->cluster_id = image.cluster_id();
  for (const auto& [name, t] : image.topics()) {
    next->topics.emplace(name, to_topic_info(t));
  }
  // Leaders as clients should see them: none while the leading broker is fenced.
  for (auto& [name, info] : next->topics) {
    const auto& t = image.topics().at(name);
    for (int i = 0; i < t.partitions_size(); ++i) {
      info.parts[static_cast<size_t>(i)].leader = cluster::leader_of(image, t.partitions(i));
    }
  }
  for (const auto& [name, id] : image.deleted_topics()) next->deleted.insert(name);
  for (const auto& [id, b] : image.brokers()) {
    next->brokers[id] = BrokerInfo{id, b.kafka().host(), static_cast<int32_t>(b.kafka().port()),
                                   b.rack(), b.fenced(), b.decommissioned(), {}};
    for (const auto& [name, e] : b.listeners()) {
      next->brokers[id].listeners[name] = {e.host(), static_cast<int32_t>(e.port())};
    }
  }
  std::lock_guard lock(mutex_);
  snapshot_ = next;
  return next;
}

std::vector<int32_t> PartitionInfo::target() const {
  std::vector<int32_t> out;
  for (int32_t id : replicas) {
    if (std::find(removing.begin(), removing.end(), id) == removing.end()) out.push_back(id);
  }
  return out;
}

std::vector<int32_t> PartitionInfo::original() const {
  std::vector<int32_t> out;
  for (int32_t id : replicas) {
    if (std::find(adding.begin(), adding.end(), id) == adding.end()) out.push_back(id);
  }
  return out;
}

namespace {

Result<std::vector<TopicRegistry::PartitionError>, TopicError> partition_results(
    const cluster::pb::ControllerResponse& resp) {
  if (resp.error_code() != 0) {
    return unexpected(TopicError{static_cast<ErrorCode>(resp.error_code()), resp.error_message()});
  }
  std::vector<TopicRegistry::PartitionError> out;
  for (const auto& r : resp.results()) {
    out.push_back({r.topic(), r.partition(),
                   TopicError{static_cast<ErrorCode>(r.error_code()), r.error_message()}});
  }
  return out;
}

}  // namespace

void TopicRegistry::reassign(const std::vector<Reassignment>& changes, ResultsDone done) {
  cluster::pb::ControllerRequest req;
  for (const auto& c : changes) {
    auto* ch = req.mutable_reassign()->add_changes();
    ch->set_topic(c.topic);
    ch->set_partition(c.partition);
    for (int32_t b : c.target) ch->add_target(b);
    ch->set_cancel(c.target.empty());
  }
  cluster_.request(std::move(req), kControllerTimeout,
                   [done](const cluster::pb::ControllerResponse& resp) {
                     done(partition_results(resp));
                   });
}

void TopicRegistry::elect_preferred(const std::vector<std::pair<std::string, int32_t>>& partitions,
                                    ResultsDone done) {
  cluster::pb::ControllerRequest req;
  for (const auto& [topic, partition] : partitions) {
    auto* t = req.mutable_elect_preferred()->add_partitions();
    t->set_topic(topic);
    t->set_partition(partition);
  }
  cluster_.request(std::move(req), kControllerTimeout,
                   [done](const cluster::pb::ControllerResponse& resp) {
                     done(partition_results(resp));
                   });
}

void TopicRegistry::decommission(int32_t broker, bool decommissioned,
                                 std::function<void(Result<void, TopicError>)> done) {
  cluster::pb::ControllerRequest req;
  req.mutable_decommission()->set_id(broker);
  req.mutable_decommission()->set_decommissioned(decommissioned);
  cluster_.request(std::move(req), kControllerTimeout,
                   [done](const cluster::pb::ControllerResponse& resp) {
                     if (resp.error_code() != 0) {
                       done(unexpected(TopicError{static_cast<ErrorCode>(resp.error_code()),
                                                  resp.error_message()}));
                       return;
                     }
                     done({});
                   });
}

void TopicRegistry::balance(std::function<void(Result<int32_t, TopicError>)> done) {
  cluster::pb::ControllerRequest req;
  req.set_balance(true);
  cluster_.request(std::move(req), kControllerTimeout,
                   [done](const cluster::pb::ControllerResponse& resp) {
                     if (resp.error_code() != 0) {
                       done(unexpected(TopicError{static_cast<ErrorCode>(resp.error_code()),
                                                  resp.error_message()}));
                       return;
                     }
                     done(resp.moves_started());
                   });
}

void TopicRegistry::send(cluster::pb::ControllerRequest req, const std::string& name, Done done) {
  cluster_.request(std::move(req), kControllerTimeout,
                   [this, name, done](const cluster::pb::ControllerResponse& resp) {
                     if (resp.error_code() != 0) {
                       done(unexpected(TopicError{static_cast<ErrorCode>(resp.error_code()),
                                                  resp.error_message()}));
                       return;
                     }
                     if (resp.has_topic()) {
                       done(to_topic_info(resp.topic()));
                       return;
                     }
                     auto snap = snapshot();
                     const TopicInfo* t = snap->find(name);
                     done(t ? *t : TopicInfo{name});
                   });
}

void TopicRegistry::create(const cluster::TopicChange& change, bool validate_only, Done done) {
  if (auto v = validate_name(change.name); !v) {
    done(unexpected(v.error()));
    return;
  }
  if (change.assignments.empty() &&
      (change.partitions <= 0 || change.partitions > kPartitionsMax)) {
    done(unexpected(
        TopicError{ErrorCode::kInvalidPartitions,
                   "partition count must be between 1 and " + std::to_string(kPartitionsMax)}));
    return;
  }
  if (auto ok = check_partition_budget(change.assignments.empty()
                                           ? change.partitions
                                           : static_cast<int64_t>(change.assignments.size()),
                                       change.replication_factor);
      !ok) {
    done(unexpected(ok.error()));
    return;
  }
  cluster::pb::ControllerRequest req;
  auto* t = req.mutable_create_topic();
  t->set_name(change.name);
  t->set_partitions(change.partitions);
  t->set_replication_factor(change.replication_factor);
  t->mutable_configs()->insert(change.configs.begin(), change.configs.end());
  t->set_internal(change.internal);
  // The same on every attempt at the controller (ClusterNode retries a request whose attempt
  // timed out): a retry after the topic was created answers with it.
  t->set_request_id(random_id(16));
  for (const auto& replicas : change.assignments) {
    auto* p = t->add_assignments();
    for (int32_t b : replicas) p->add_replicas(b);
  }
  req.set_validate_only(validate_only);
  send(std::move(req), change.name, std::move(done));
}

Result<TopicInfo, TopicError> TopicRegistry::create_and_wait(const cluster::TopicChange& change) {
  std::promise<Result<TopicInfo, TopicError>> created;
  create(change, false,
         [&created](Result<TopicInfo, TopicError> r) { created.set_value(std::move(r)); });
  return created.get_future().get();
}

void TopicRegistry::remove(const std::string& name, Done done) {
  auto snap = snapshot();
  const TopicInfo* t = snap->find(name);
  if (!t) {
    done(unexpected(
        TopicError{ErrorCode::kUnknownTopicOrPartition, "unknown topic '" + name + "'"}));
    return;
  }
  if (auto ok = check_client_may_change(name); !ok) {
    done(unexpected(ok.error()));
    return;
  }
  TopicInfo removed = *t;
  cluster::pb::ControllerRequest req;
  req.set_delete_topic(name);
  send(std::move(req), name, [removed, done](Result<TopicInfo, TopicError> r) {
    if (!r) {
      done(std::move(r));
    } else {
      done(removed);
    }
  });
}

void TopicRegistry::set_partition_count(const std::string& name, int32_t count,
                                        const std::vector<std::vector<int32_t>>& assignments,
                                        bool validate_only, Done done) {
  if (auto ok = check_client_may_change(name); !ok) {
    done(unexpected(ok.error()));
    return;
  }
  if (auto snap = snapshot(); const TopicInfo* t = snap->find(name)) {
    if (auto ok = check_partition_budget(count - t->partitions, t->replication_factor); !ok) {
      done(unexpected(ok.error()));
      return;
    }
  }
  if (count > kPartitionsMax) {
    done(unexpected(TopicError{ErrorCode::kInvalidPartitions,
                               "at most " + std::to_string(kPartitionsMax) + " partitions"}));
    return;
  }
  cluster::pb::ControllerRequest req;
  req.mutable_create_partitions()->set_name(name);
  req.mutable_create_partitions()->set_partitions(count);
  for (const auto& replicas : assignments) {
    auto* p = req.mutable_create_partitions()->add_assignments();
    for (int32_t b : replicas) p->add_replicas(b);
  }
  req.set_validate_only(validate_only);
  send(std::move(req), name, std::move(done));
}

void TopicRegistry::set_configs(const std::string& name,
                                const std::map<std::string, std::string>& configs, Done done) {
  if (auto ok = check_client_may_change(name); !ok) {
    done(unexpected(ok.error()));
    return;
  }
  cluster::pb::ControllerRequest req;
  req.mutable_set_configs()->set_name(name);
  req.mutable_set_configs()->mutable_configs()->insert(configs.begin(), configs.end());
  send(std::move(req), name, std::move(done));
}

void TopicRegistry::set_broker_configs(const std::string& resource,
                                       const std::map<std::string, std::string>& configs,
                                       Done done) {
  cluster::pb::ControllerRequest req;
  req.mutable_set_broker_configs()->set_broker(resource);
  req.mutable_set_broker_configs()->mutable_configs()->insert(configs.begin(), configs.end());
  send(std::move(req), "", std::move(done));
}

Result<int64_t, TopicError> TopicRegistry::allocate_producer_ids(int64_t count) {
  std::promise<cluster::pb::ControllerResponse> answered;
  cluster::pb::ControllerRequest req;
  req.set_allocate_producer_ids(count);
  cluster_.request(
      std::move(req), kControllerTimeout,
      [&answered](const cluster::pb::ControllerResponse& resp) { answered.set_value(resp); });
  auto resp = answered.get_future().get();
  if (resp.error_code() != 0) {
    return unexpected(TopicError{static_cast<ErrorCode>(resp.error_code()), resp.error_message()});
  }
  return resp.first_producer_id();
}

}  // namespace sluice::broker
