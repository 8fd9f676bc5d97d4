// The controller's state machine: the cluster metadata image and the records that change it
// (cluster.proto). apply() is deterministic: every broker applies the same committed records in
// the same order and gets the same image. It also judges each record against the image (a topic
// created twice, a config for a deleted topic): the verdict is part of the deterministic result,
// so the broker that proposed a record learns from its own apply whether it took effect.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cluster/cluster.pb.h"
#include "protocol/error_codes.h"

namespace sluice::cluster {

struct ApplyResult {
  kafka::ErrorCode code = kafka::ErrorCode::kNone;
  std::string message;
  int64_t value = 0;  // AllocateProducerIds: the first id handed out
  bool ok() const { return code == kafka::ErrorCode::kNone; }
};

class MetadataState {
 public:
  MetadataState();
  const pb::Image& image() const {
    settle();
    return *image_;
  }
  // The current image, shared and immutable: a new one is made by each change.
  std::shared_ptr<const pb::Image> shared() const {
    settle();
    return image_;
  }

  // Applies a record to a private copy of the image, made by the first apply after the image
  // was last read: records applied one after another (a Raft Ready's committed entries) share
  // one copy, where a copy each made creating N topics quadratic.
  ApplyResult apply(uint64_t index, const pb::Record& record);
  // Replaces the image (snapshot install, restart).
  bool restore(std::string_view bytes);
  std::string serialize() const;

 private:
  std::shared_ptr<pb::Image> mutable_copy() const;
  ApplyResult apply_to(pb::Image& img, const pb::Record& record);
  // The copy being applied to becomes the image (before anyone reads it).
  void settle() const {
    if (working_) image_ = std::move(working_);
  }

  mutable std::shared_ptr<const pb::Image> image_;
  mutable std::shared_ptr<pb::Image> working_;  // only this object refers to it
};

// Which brokers can take replicas and lead: registered and not fenced, sorted by id.
std::vector<const pb::Broker*> live_brokers(const pb::Image& image);
// A partition's leader as clients should see it: -1 while it has none.
int32_t leader_of(const pb::Image& image, const pb::Partition& partition);

// A BROKER config resource name: "" (the cluster-wide default) or a broker id as Kafka
// writes it (decimal, no sign, no leading zero).
bool valid_broker_resource(const std::string& name);

// Moves (cluster.proto, Partition): is one running; the replicas it ends with (replicas minus
// removing, in order); the replicas it started from (replicas minus adding).
bool moving(const pb::Partition& partition);
std::vector<int32_t> target_replicas(const pb::Partition& partition);
std::vector<int32_t> original_replicas(const pb::Partition& partition);

}  // namespace sluice::cluster
