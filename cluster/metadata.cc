#include "cluster/metadata.h"

#include <algorithm>

namespace sluice::cluster {

using kafka::ErrorCode;

namespace {

ApplyResult fail(ErrorCode code, std::string message) { return {code, std::move(message), 0}; }

bool broker_live(const pb::Image& img, int32_t id) {
  auto it = img.brokers().find(id);
  return it != img.brokers().end() && !it->second.fenced();
}

// Partition leaders are what the partitions' Raft leaders report (SetLeaders): a fenced
// broker's partitions keep their last reported leader until a newer epoch is reported.

}  // namespace

MetadataState::MetadataState() {
  auto img = std::make_shared<pb::Image>();
  img->set_version(1);
  img->set_next_producer_id(1000);
  image_ = std::move(img);
}

std::shared_ptr<pb::Image> MetadataState::mutable_copy() const {
  return std::make_shared<pb::Image>(*image_);
}

ApplyResult MetadataState::apply(uint64_t index, const pb::Record& record) {
  auto next = mutable_copy();
  next->set_applied_index(index);
  ApplyResult r = apply_to(*next, record);
  image_ = std::move(next);
  return r;
}

ApplyResult MetadataState::apply_to(pb::Image& img, const pb::Record& rec) {
  switch (rec.kind_case()) {
    case pb::Record::kSetClusterId:
      if (img.cluster_id().empty()) img.set_cluster_id(rec.set_cluster_id().cluster_id());
      return {};
    case pb::Record::kRegisterBroker: {
      const pb::Broker& b = rec.register_broker().broker();
      (*img.mutable_brokers())[b.id()] = b;
      (*img.mutable_brokers())[b.id()].set_fenced(false);
      (*img.mutable_brokers())[b.id()].set_registered_at(img.applied_index());
      return {};
    }
    case pb::Record::kFenceBroker: {
      const auto& f = rec.fence_broker();
      auto it = img.mutable_brokers()->find(f.id());
      if (it == img.mutable_brokers()->end()) {
        return fail(ErrorCode::kBrokerNotAvailable, "broker " + std::to_string(f.id()) +
                                                        " is not registered");
      }
      if (f.incarnation() != 0 && f.incarnation() != it->second.incarnation()) {
        return fail(ErrorCode::kInvalidRequest, "stale incarnation: the broker restarted since");
      }
      if (!f.fenced() && it->second.shut_down()) {
        return fail(ErrorCode::kInvalidRequest, "broker shut down; it must register again");
      }
      it->second.set_fenced(f.fenced());
      it->second.set_shut_down(f.fenced() && f.shutdown());
      return {};
    }
    case pb::Record::kCreateTopic: {
      const pb::Topic& t = rec.create_topic().topic();
      if (img.topics().count(t.name())) {
        return fail(ErrorCode::kTopicAlreadyExists, "topic '" + t.name() + "' already exists");
      }
      img.mutable_deleted_topics()->erase(t.name());
      pb::Topic& stored = (*img.mutable_topics())[t.name()];
      stored = t;
      for (auto& p : *stored.mutable_partitions()) {
        p.set_leader(-1);  // until its Raft leader reports (SetLeaders)
        p.set_leader_epoch(0);
      }
      return {};
    }
    case pb::Record::kDeleteTopic: {
      auto it = img.mutable_topics()->find(rec.delete_topic().name());
      if (it == img.mutable_topics()->end()) {
        return fail(ErrorCode::kUnknownTopicOrPartition,
                    "topic '" + rec.delete_topic().name() + "' does not exist");
      }
      (*img.mutable_deleted_topics())[it->first] = it->second.topic_id();
      img.mutable_topics()->erase(it);
      return {};
    }
    case pb::Record::kCreatePartitions: {
      const auto& c = rec.create_partitions();
      auto it = img.mutable_topics()->find(c.name());
      if (it == img.mutable_topics()->end()) {
        return fail(ErrorCode::kUnknownTopicOrPartition, "topic '" + c.name() + "' does not exist");
      }
      for (const auto& p : c.partitions()) {
        pb::Partition* added = it->second.add_partitions();
        *added = p;
        added->set_leader(-1);  // until its Raft leader reports (SetLeaders)
        added->set_leader_epoch(0);
      }
      return {};
    }
    case pb::Record::kSetTopicConfigs: {
      const auto& c = rec.set_topic_configs();
      auto it = img.mutable_topics()->find(c.name());
      if (it == img.mutable_topics()->end()) {
        return fail(ErrorCode::kUnknownTopicOrPartition, "topic '" + c.name() + "' does not exist");
      }
      *it->second.mutable_configs() = c.configs();
      return {};
    }
    case pb::Record::kAllocateProducerIds: {
      const int64_t count = rec.allocate_producer_ids().count();
      if (count <= 0 || count > 1'000'000) return fail(ErrorCode::kInvalidRequest, "bad count");
      ApplyResult r;
      r.value = img.next_producer_id();
      img.set_next_producer_id(img.next_producer_id() + count);
      return r;
    }
    case pb::Record::kSetLeaders: {
      for (const auto& ch : rec.set_leaders().changes()) {
        auto it = img.mutable_topics()->find(ch.topic());
        if (it == img.mutable_topics()->end()) continue;
        if (ch.partition() < 0 || ch.partition() >= it->second.partitions_size()) continue;
        pb::Partition* p = it->second.mutable_partitions(ch.partition());
        if (ch.leader_epoch() < p->leader_epoch()) continue;  // stale report
        p->set_leader(ch.leader());
        p->set_leader_epoch(ch.leader_epoch());
      }
      return {};
    }
    case pb::Record::KIND_NOT_SET:
      break;
  }
  return fail(ErrorCode::kInvalidRequest, "unknown metadata record");
}

bool MetadataState::restore(std::string_view bytes) {
  auto img = std::make_shared<pb::Image>();
  if (!img->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) return false;
  image_ = std::move(img);
  return true;
}

std::string MetadataState::serialize() const { return image_->SerializeAsString(); }

std::vector<const pb::Broker*> live_brokers(const pb::Image& image) {
  std::vector<const pb::Broker*> out;
  for (const auto& [id, b] : image.brokers()) {
    if (!b.fenced()) out.push_back(&b);
  }
  std::sort(out.begin(), out.end(),
            [](const pb::Broker* a, const pb::Broker* b) { return a->id() < b->id(); });
  return out;
}

int32_t leader_of(const pb::Image& image, const pb::Partition& partition) {
  if (partition.leader() < 0 || !broker_live(image, partition.leader())) return -1;
  return partition.leader();
}

}  // namespace sluice::cluster
