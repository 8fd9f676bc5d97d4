// The topics of this broker and their settings: the metadata image. Read on every request
// (snapshot() hands out an immutable copy), written on topic changes under a mutex, and
// persisted atomically to <data-dir>/metadata.bin before a change is reported done, so a crash
// never leaves half a topic behind.
#pragma once

#include <array>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "broker/config.h"
#include "common/result.h"
#include "protocol/error_codes.h"

namespace sluice::broker {

struct TopicInfo {
  std::string name;
  int32_t partitions = 0;
  int16_t replication_factor = 1;
  std::map<std::string, std::string> configs;  // explicitly set topic settings
  std::array<uint8_t, 16> id{};
  bool internal = false;
};

struct TopicsSnapshot {
  uint64_t version = 0;
  std::map<std::string, TopicInfo> topics;
  const TopicInfo* find(const std::string& name) const {
    auto it = topics.find(name);
    return it == topics.end() ? nullptr : &it->second;
  }
};

// A Kafka error with a message for the client (CreateTopics and friends carry both).
struct TopicError {
  kafka::ErrorCode code = kafka::ErrorCode::kNone;
  std::string message;
};

class TopicRegistry {
 public:
  // Loads (or creates) the image in `data_dir`. `cluster_id` overrides a stored or new id.
  static Result<std::unique_ptr<TopicRegistry>> open(const std::string& data_dir,
                                                     const std::string& cluster_id);

  std::shared_ptr<const TopicsSnapshot> snapshot() const;
  // A copy of one topic's entry. (A pointer into `snapshot()->...` lives only as long as the
  // snapshot: keep the snapshot in a variable, or use this.)
  std::optional<TopicInfo> find(const std::string& name) const;
  const std::string& cluster_id() const { return cluster_id_; }

  Result<TopicInfo, TopicError> create(const std::string& name, int32_t partitions,
                                       int16_t replication_factor,
                                       const std::map<std::string, std::string>& configs,
                                       bool internal = false);
  // remove(), set_partition_count() and set_configs() refuse internal topics with
  // TOPIC_AUTHORIZATION_FAILED.
  Result<TopicInfo, TopicError> remove(const std::string& name);
  // Removes a topic whose creation failed half-way (internal topics too), so that nothing of
  // it is kept.
  Result<TopicInfo, TopicError> discard(const std::string& name);
  // The most partitions (all topics together) this broker holds: create() and
  // set_partition_count() refuse more with INVALID_PARTITIONS.
  void set_partitions_max(int64_t count);
  Result<TopicInfo, TopicError> set_partition_count(const std::string& name, int32_t count);
  // Replaces the explicitly set settings of a topic with `configs`.
  Result<TopicInfo, TopicError> set_configs(const std::string& name,
                                            const std::map<std::string, std::string>& configs);
  // Hands out `count` producer ids, persisted so that none is reused after a restart.
  Result<int64_t, TopicError> allocate_producer_ids(int64_t count);

  static Result<void, TopicError> validate_name(const std::string& name);
  // Kafka's internal topics (__consumer_offsets, __transaction_state): the broker writes them;
  // clients may read them but not produce to, delete, repartition or reconfigure them.
  static bool is_internal(const std::string& name);
  // An error for a client's change to an internal topic (TOPIC_AUTHORIZATION_FAILED).
  static Result<void, TopicError> check_client_may_change(const std::string& name);

 private:
  TopicRegistry(std::string path, std::string cluster_id)
      : path_(std::move(path)), cluster_id_(std::move(cluster_id)) {}
  // Writes the image with `next` in place of the current snapshot; on success publishes it.
  Result<void, TopicError> commit(std::shared_ptr<TopicsSnapshot> next, int64_t next_producer_id);

  std::string path_;
  std::string cluster_id_;
  mutable std::mutex mutex_;  // guards snapshot_ and next_producer_id_ (rare writes)
  std::shared_ptr<const TopicsSnapshot> snapshot_ = std::make_shared<TopicsSnapshot>();
  int64_t next_producer_id_ = 1000;
  int64_t partitions_max_ = INT64_MAX;
  // Removes an existing topic (mutex_ held).
  Result<TopicInfo, TopicError> erase(const std::string& name);
  // Partitions of every topic but `except`, plus `more`, against partitions_max_.
  Result<void, TopicError> check_partition_budget(const std::string& except, int64_t more) const;
};

}  // namespace sluice::broker
