#include "cluster/metadata.h"

#include <algorithm>
#include <climits>

#include "cluster/acl.h"
#include "cluster/quotas.h"
#include "cluster/scram.h"

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

pb::Partition* find_partition(pb::Image& img, const std::string& topic, int32_t partition) {
  auto it = img.mutable_topics()->find(topic);
  if (it == img.mutable_topics()->end()) return nullptr;
  if (partition < 0 || partition >= it->second.partitions_size()) return nullptr;
  return it->second.mutable_partitions(partition);
}

bool contains(const google::protobuf::RepeatedField<int32_t>& ids, int32_t id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

bool same_set(std::vector<int32_t> a, std::vector<int32_t> b) {
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  return a == b;
}

void set_replicas(pb::Partition& p, const std::vector<int32_t>& replicas) {
  p.clear_replicas();
  for (int32_t id : replicas) p.add_replicas(id);
}

// Sets the move's target: replicas = target, then every current replica not in it (they stay
// hosted until the move completes). adding = every replica not among those the move started
// from (a replica added by an earlier target and dropped by this one is in both lists: it is
// removed, and a cancel does not bring it back); removing = replicas not in the target.
void start_move(pb::Partition& p, const std::vector<int32_t>& target) {
  const std::vector<int32_t> original = original_replicas(p);
  auto in = [](const std::vector<int32_t>& v, int32_t id) {
    return std::find(v.begin(), v.end(), id) != v.end();
  };
  std::vector<int32_t> all(target);
  std::vector<int32_t> adding, removing;
  for (int32_t id : p.replicas()) {
    if (!in(target, id)) {
      all.push_back(id);
      removing.push_back(id);
    }
  }
  for (int32_t id : all) {
    if (!in(original, id)) adding.push_back(id);
  }
  if (removing.empty()) adding.clear();  // every replica is in the target: nothing to wait for
  set_replicas(p, all);
  p.clear_adding();
  p.clear_removing();
  for (int32_t id : adding) p.add_adding(id);
  for (int32_t id : removing) p.add_removing(id);
}

}  // namespace

bool valid_broker_resource(const std::string& name) {
  if (name.empty()) return true;
  if (name.size() > 10 || (name.size() > 1 && name[0] == '0')) return false;
  if (!std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return false;
  }
  return std::stoll(name) <= INT32_MAX;
}

bool moving(const pb::Partition& p) { return p.adding_size() > 0 || p.removing_size() > 0; }

std::vector<int32_t> target_replicas(const pb::Partition& p) {
  std::vector<int32_t> out;
  for (int32_t id : p.replicas()) {
    if (!contains(p.removing(), id)) out.push_back(id);
  }
  return out;
}

std::vector<int32_t> original_replicas(const pb::Partition& p) {
  std::vector<int32_t> out;
  for (int32_t id : p.replicas()) {
    if (!contains(p.adding(), id)) out.push_back(id);
  }
  return out;
}

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
  if (!working_) working_ = mutable_copy();
  working_->set_applied_index(index);
  return apply_to(*working_, record);
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
      if (auto it = img.topics().find(t.name()); it != img.topics().end()) {
        // Two attempts of one request both proposed: the first created it.
        if (!t.created_by().empty() && it->second.created_by() == t.created_by()) return {};
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
    case pb::Record::kSetBrokerConfigs: {
      const auto& c = rec.set_broker_configs();
      if (!valid_broker_resource(c.broker())) {
        return fail(ErrorCode::kInvalidRequest, "broker resource name '" + c.broker() +
                                                    "' is neither empty nor a broker id");
      }
      if (c.configs().empty()) {
        img.mutable_broker_configs()->erase(c.broker());
      } else {
        *(*img.mutable_broker_configs())[c.broker()].mutable_configs() = c.configs();
      }
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
        p->mutable_isr()->CopyFrom(ch.isr());
        if (p->replicas_size() > 0 && p->replicas(0) == ch.leader()) p->set_elect_preferred(false);
      }
      return {};
    }
    case pb::Record::kReassign: {
      for (const auto& ch : rec.reassign().changes()) {
        pb::Partition* p = find_partition(img, ch.topic(), ch.partition());
        if (p == nullptr) continue;
        std::vector<int32_t> target(ch.target().begin(), ch.target().end());
        if (ch.cancel()) target = original_replicas(*p);
        if (target.empty()) continue;
        start_move(*p, target);
      }
      return {};
    }
    case pb::Record::kCompleteReassignment: {
      const auto& c = rec.complete_reassignment();
      pb::Partition* p = find_partition(img, c.topic(), c.partition());
      if (p == nullptr) {
        return fail(ErrorCode::kUnknownTopicOrPartition, "no such partition");
      }
      if (!moving(*p)) return fail(ErrorCode::kNoReassignmentInProgress, "no move in progress");
      std::vector<int32_t> target = target_replicas(*p);
      std::vector<int32_t> voters(c.voters().begin(), c.voters().end());
      if (!same_set(target, voters)) {
        return fail(ErrorCode::kInvalidReplicaAssignment,
                    "the group's voters are not the move's target (the move changed meanwhile)");
      }
      set_replicas(*p, target);
      p->clear_adding();
      p->clear_removing();
      return {};
    }
    case pb::Record::kDecommission: {
      const auto& d = rec.decommission();
      auto it = img.mutable_brokers()->find(d.id());
      if (it == img.mutable_brokers()->end()) {
        return fail(ErrorCode::kBrokerNotAvailable,
                    "broker " + std::to_string(d.id()) + " is not registered");
      }
      it->second.set_decommissioned(d.decommissioned());
      return {};
    }
    case pb::Record::kAlterClientQuotas:
      quotas::apply(img, rec.alter_client_quotas());
      return {};
    case pb::Record::kAlterScramCredentials:
      scram::apply(img, rec.alter_scram_credentials());
      return {};
    case pb::Record::kCreateAcls: {
      for (const auto& b : rec.create_acls().acls()) {
        if (!acl::validate(b).empty()) continue;  // the controller validated: never here
        const auto& have = img.acls();
        if (std::none_of(have.begin(), have.end(),
                         [&](const pb::AclBinding& x) { return acl::same(x, b); })) {
          *img.add_acls() = b;
        }
      }
      return {};
    }
    case pb::Record::kDeleteAcls: {
      const auto& gone = rec.delete_acls().acls();
      auto* acls = img.mutable_acls();
      auto end = std::remove_if(acls->begin(), acls->end(), [&](const pb::AclBinding& x) {
        return std::any_of(gone.begin(), gone.end(),
                           [&](const pb::AclBinding& g) { return acl::same(x, g); });
      });
      acls->erase(end, acls->end());
      return {};
    }
    case pb::Record::kElectPreferred: {
      for (const auto& t : rec.elect_preferred().partitions()) {
        pb::Partition* p = find_partition(img, t.topic(), t.partition());
        if (p != nullptr) p->set_elect_preferred(!rec.elect_preferred().done());
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
  working_.reset();
  image_ = std::move(img);
  return true;
}

std::string MetadataState::serialize() const { return image().SerializeAsString(); }

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
