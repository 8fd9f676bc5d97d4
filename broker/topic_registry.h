// The broker's view of the cluster metadata: topics with their partitions' replicas and
// leaders, the brokers, the cluster id. It is a cache of the controller's image
// (cluster/cluster_node.h), republished whole on every change: snapshot() hands out an
// immutable copy that any shard may read without a lock for as long as it holds it.
//
// Changes (create, delete, grow, reconfigure, producer ids) go to the controller leader through
// the ClusterNode, which answers once this broker's own image includes them; every broker then
// sees the same result. Nothing here writes files: the controller's Raft log is the record.
#pragma once

#include <array>
#include <atomic>
#include <optional>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "cluster/cluster_node.h"
#include "common/result.h"
#include "protocol/error_codes.h"

namespace sluice::broker {

struct PartitionInfo {
  std::vector<int32_t> replicas;  // replicas[0]: preferred leader
  int32_t leader = -1;            // -1: no leader now
  int32_t leader_epoch = 0;
  // A move in progress (cluster.proto, Partition): replicas = target, then those leaving.
  std::vector<int32_t> adding;    // not among the replicas the move started from
  std::vector<int32_t> removing;  // leaving once the move completes
  bool elect_preferred = false;   // a preferred leader election was asked
  std::vector<int32_t> isr;       // as the leader last reported it; empty: not reported
  bool moving() const { return !adding.empty() || !removing.empty(); }
  // The replicas the move ends with (all of them when none runs), in order.
  std::vector<int32_t> target() const;
  // The replicas the move started from (Kafka's ListPartitionReassignments "replicas" minus
  // "adding"): a cancel goes back to these.
  std::vector<int32_t> original() const;
};

struct TopicInfo {
  std::string name;
  int32_t partitions = 0;
  int16_t replication_factor = 1;
  std::map<std::string, std::string> configs;  // explicitly set topic settings
  std::array<uint8_t, 16> id{};
  bool internal = false;
  std::vector<PartitionInfo> parts;  // one per partition
};

struct BrokerInfo {
  int32_t id = -1;
  std::string host;
  int32_t port = 0;
  std::string rack;
  bool fenced = false;
  bool decommissioned = false;
  std::map<std::string, std::pair<std::string, int32_t>> listeners;  // name -> host, port
  // The address of listener `name`, or the first listener's when it has no such listener.
  std::pair<std::string, int32_t> address(const std::string& name) const {
    auto it = listeners.find(name);
    return it != listeners.end() ? it->second : std::pair{host, port};
  }
};

struct TopicsSnapshot {
  uint64_t version = 0;  // the controller log index this view includes
  std::string cluster_id;
  std::map<std::string, TopicInfo> topics;
  std::map<int32_t, BrokerInfo> brokers;  // registered brokers, fenced ones included
  std::set<std::string> deleted;          // topics deleted (and not created again)
  const TopicInfo* find(const std::string& name) const {
    auto it = topics.find(name);
    return it == topics.end() ? nullptr : &it->second;
  }
  const PartitionInfo* partition(const std::string& topic, int32_t index) const {
    const TopicInfo* t = find(topic);
    if (!t || index < 0 || index >= static_cast<int32_t>(t->parts.size())) return nullptr;
    return &t->parts[static_cast<size_t>(index)];
  }
};

// A Kafka error with a message for the client (CreateTopics and friends carry both).
struct TopicError {
  kafka::ErrorCode code = kafka::ErrorCode::kNone;
  std::string message;
};

class TopicRegistry {
 public:
  explicit TopicRegistry(cluster::ClusterNode& cluster) : cluster_(cluster) {}

  std::shared_ptr<const TopicsSnapshot> snapshot() const;
  std::string cluster_id() const { return snapshot()->cluster_id; }
  // A copy of a topic's entry (no pointer into a snapshot that may be gone).
  std::optional<TopicInfo> find(const std::string& name) const;
  // At most this many partitions hosted by this broker (set from the open-files limit).
  void set_partitions_max(int64_t count);
  // Replaces the view with the controller's image (the ClusterNode's image callback).
  std::shared_ptr<const TopicsSnapshot> publish(const cluster::pb::Image& image);

  using Done = std::function<void(Result<TopicInfo, TopicError>)>;
  // Each calls `done` (on the cluster thread) once this broker's view holds the change.
  void create(const cluster::TopicChange& change, bool validate_only, Done done);
  // create() for start-up work (migration, --rebuild-metadata): blocks until it is done. Never
  // call it on the cluster thread, which answers it.
  Result<TopicInfo, TopicError> create_and_wait(const cluster::TopicChange& change);
  void remove(const std::string& name, Done done);
  // Grows topic `name` to `count` partitions; `assignments` (empty: placed by the controller)
  // lists the replicas of each new partition.
  void set_partition_count(const std::string& name, int32_t count,
                           const std::vector<std::vector<int32_t>>& assignments, bool validate_only,
                           Done done);
  // Replaces the explicitly set settings of a topic with `configs`.
  void set_configs(const std::string& name, const std::map<std::string, std::string>& configs,
                   Done done);
  // Replaces the dynamic configs of a BROKER resource ("" or "<id>", broker/dynamic_config.h)
  // with `configs` (already validated); empty removes them.
  void set_broker_configs(const std::string& resource,
                          const std::map<std::string, std::string>& configs, Done done);
  // Moves (reassignments). `target` empty: cancel the partition's running move. `done` gets
  // one result per change, in order (code kNone: accepted; the move then runs in the
  // background, driven by the partition's leader).
  struct Reassignment {
    std::string topic;
    int32_t partition = 0;
    std::vector<int32_t> target;  // empty: cancel
  };
  struct PartitionError {
    std::string topic;
    int32_t partition = 0;
    TopicError error;
  };
  using ResultsDone = std::function<void(Result<std::vector<PartitionError>, TopicError>)>;
  void reassign(const std::vector<Reassignment>& changes, ResultsDone done);
  // Preferred leader elections: the partitions' leaders hand leadership to their preferred
  // replica (replicas[0]). Per partition: ELECTION_NOT_NEEDED when it already leads,
  // PREFERRED_LEADER_NOT_AVAILABLE when it is not live.
  void elect_preferred(const std::vector<std::pair<std::string, int32_t>>& partitions,
                       ResultsDone done);
  // Drains a broker (every replica moves off it; it takes no new ones), or undoes that.
  void decommission(int32_t broker, bool decommissioned,
                    std::function<void(Result<void, TopicError>)> done);
  // Plans and starts the moves that balance replicas across brokers now; `done` gets the
  // number of partitions that will move.
  void balance(std::function<void(Result<int32_t, TopicError>)> done);

  // Hands out `count` producer ids, unique across the cluster and its restarts. Blocks for a
  // controller round trip: called once per block of ids.
  Result<int64_t, TopicError> allocate_producer_ids(int64_t count);

  static Result<void, TopicError> validate_name(const std::string& name);
  // Kafka's internal topics belong to the broker: clients may not delete, grow or alter them.
  static bool is_internal(const std::string& name);
  static Result<void, TopicError> check_client_may_change(const std::string& name);
  static TopicInfo to_topic_info(const cluster::pb::Topic& topic);

 private:
  void send(cluster::pb::ControllerRequest req, const std::string& name, Done done);
  // Would `more` new partitions, spread over the live brokers with `rf` replicas each, pass
  // this broker's partition limit? (A precheck; the controller places them.)
  Result<void, TopicError> check_partition_budget(int64_t more, int32_t rf) const;

  cluster::ClusterNode& cluster_;
  mutable std::mutex mutex_;  // guards snapshot_
  std::shared_ptr<const TopicsSnapshot> snapshot_ = std::make_shared<TopicsSnapshot>();
  std::atomic<int64_t> partitions_max_{INT64_MAX};
};

}  // namespace sluice::broker
