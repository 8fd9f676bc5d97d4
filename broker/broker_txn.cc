// The broker's side of transactions (txn_coordinator.h): __transaction_state, created on first
// use; FindCoordinator for a transactional id, InitProducerId with one, AddPartitionsToTxn,
// AddOffsetsToTxn and EndTxn; and the markers the coordinator has partition leaders write
// (this broker's own through write_txn_markers, a peer's over the inter-broker transport,
// method kTxnMarkersMethod, the WriteTxnMarkers request and response in Kafka's encoding).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>

#include "broker/broker.h"
#include "broker/kafka_errors.h"
#include "protocol/message_frame.h"

namespace sluice::broker {

using cluster::acl::Operation;
using cluster::acl::ResourceType;
using kafka::ErrorCode;

namespace {

constexpr int16_t kMarkersVersion = 1;
constexpr std::chrono::milliseconds kMarkersCallTimeout{30000};

// Kafka answers INVALID_PRODUCER_EPOCH where a client's version predates PRODUCER_FENCED.
ErrorCode fenced_for(ErrorCode e, int16_t version, int16_t first_fenced_version) {
  return e == ErrorCode::kProducerFenced && version < first_fenced_version
             ? ErrorCode::kInvalidProducerEpoch
             : e;
}

}  // namespace

Status Broker::start_transactions() {
  const std::string topic = TxnCoordinator::kTopic;
  TxnOptions options;
  auto snap = registry_->snapshot();
  const TopicInfo* info = snap->find(topic);
  options.partitions = info ? info->partitions : config_.transaction_state_partitions;
  options.max_timeout_ms = config_.transaction_max_timeout_ms;
  options.id_expiration_ms = config_.transactional_id_expiration_ms;
  TxnHost host;
  host.shard_count = static_cast<uint32_t>(shards_.size());
  InternalTopicOps ops = internal_topic_ops(topic);  // as the group coordinator's
  host.shard_of = std::move(ops.shard_of);
  host.post = std::move(ops.post);
  host.log_of = std::move(ops.log_of);
  host.replicate = std::move(ops.replicate);
  host.after_append = std::move(ops.after_append);
  host.post_after = [this](uint32_t shard, int64_t delay_ms, std::function<void()> fn) {
    auto timer = std::make_shared<boost::asio::steady_timer>(shards_[shard]->shard.context());
    timer->expires_after(std::chrono::milliseconds(delay_ms));
    timer->async_wait([timer, fn = std::move(fn)](boost::system::error_code ec) {
      if (!ec) fn();
    });
  };
  host.coordinator_epoch = [this, topic](int32_t p) -> int32_t {
    Partition* part = shard_of({topic, p}).find({topic, p});
    return part && part->replica ? part->replica->leader_epoch() : 0;
  };
  host.next_producer_id = [this]() -> Result<int64_t, ErrorCode> {
    auto id = next_producer_id();
    if (!id) return unexpected(id.error().code);
    return *id;
  };
  host.send_markers = [this](kafka::WriteTxnMarkersRequest request,
                             std::function<void(std::vector<TxnMarkerResult>)> done) {
    send_txn_markers(std::move(request), std::move(done));
  };
  host.topic_exists = [this](const std::string& name) { return registry_->find(name).has_value(); };
  txns_ = std::make_unique<TxnCoordinator>(options, std::move(host));
  txns_ready_.store(true, std::memory_order_release);
  return {};
}

// __transaction_state is created by the first broker asked for a transaction coordinator, as
// Kafka does: brokers of clusters that never use transactions keep no such partitions.
bool Broker::ensure_txn_topic() {
  const std::string topic = TxnCoordinator::kTopic;
  if (registry_->find(topic)) return true;
  if (txn_topic_requested_.exchange(true)) return false;
  cluster::TopicChange change;
  change.name = topic;
  change.partitions = txns_->partitions();
  const auto voters = cluster::parse_voters(config_.controller_voters);
  change.replication_factor =
      config_.transaction_state_replication_factor > 0
          ? config_.transaction_state_replication_factor
          : std::clamp(static_cast<int32_t>(voters ? voters->size() : 1), 1, 3);
  change.internal = true;
  change.configs = {
      {"cleanup.policy", "compact"},
      {"segment.bytes", std::to_string(std::min<int64_t>(104857600, config_.segment_bytes))}};
  spdlog::info("creating {} ({} partitions, {} replicas) for the first transactional producer",
               topic, change.partitions, change.replication_factor);
  create_topic(change, [this, topic](Result<TopicInfo, TopicError> r) {
    if (!r && r.error().code != ErrorCode::kTopicAlreadyExists) {
      spdlog::warn("cannot create {} yet: {}", topic, r.error().message);
      txn_topic_requested_.store(false);  // the next request tries again
    }
  });
  return false;
}

void Broker::handle_find_txn_coordinator(std::shared_ptr<Request> req,
                                         const kafka::FindCoordinatorRequest& body) {
  kafka::FindCoordinatorResponse resp;
  resp.node_id = -1;
  resp.port = -1;
  if (!allowed(*req, Operation::kDescribe, ResourceType::kTransactionalId, body.key)) {
    resp.error_code = code(ErrorCode::kTransactionalIdAuthorizationFailed);
    respond(*req, resp);
    return;
  }
  auto unavailable = [&](const char* why) {
    resp.error_code = code(ErrorCode::kCoordinatorNotAvailable);
    resp.error_message = why;
    respond(*req, resp);
  };
  if (!txns_ready_.load(std::memory_order_acquire)) return unavailable("starting");
  if (!ensure_txn_topic()) return unavailable("the transaction log is being created");
  auto snap = registry_->snapshot();
  const TopicInfo* t = snap->find(TxnCoordinator::kTopic);
  const int32_t p = txns_->partition_of(body.key);
  if (!t || p >= t->partitions) return unavailable("the transaction log is being created");
  const int32_t leader = t->parts[static_cast<size_t>(p)].leader;
  auto b = snap->brokers.find(leader);
  if (leader < 0 || b == snap->brokers.end() || b->second.fenced) {
    return unavailable("the coordinator of this transactional id is not available");
  }
  resp.node_id = leader;
  resp.host = b->second.host;
  resp.port = b->second.port;
  respond(*req, on_listener(*req, resp));
}

void Broker::handle_init_txn_producer_id(std::shared_ptr<Request> req,
                                         const kafka::InitProducerIdRequest& body) {
  const int16_t version = req->header.api_version;
  auto answer = [req, version](ErrorCode e, int64_t pid, int16_t epoch) {
    kafka::InitProducerIdResponse resp;
    resp.error_code = code(fenced_for(e, version, 4));
    resp.producer_id = pid;
    resp.producer_epoch = epoch;
    respond(*req, resp);
  };
  if (!allowed(*req, Operation::kWrite, ResourceType::kTransactionalId, *body.transactional_id)) {
    return answer(ErrorCode::kTransactionalIdAuthorizationFailed, -1, -1);
  }
  if (!txns_ready_.load(std::memory_order_acquire) || !ensure_txn_topic()) {
    return answer(ErrorCode::kCoordinatorNotAvailable, -1, -1);
  }
  txns_->init_producer_id(*body.transactional_id, body.transaction_timeout_ms, body.producer_id,
                          body.producer_epoch, answer);
}

void Broker::handle_add_partitions_to_txn(std::shared_ptr<Request> req,
                                          const kafka::AddPartitionsToTxnRequest& body) {
  const int16_t version = req->header.api_version;
  auto resp = std::make_shared<kafka::AddPartitionsToTxnResponse>();
  // Kafka's rule: any partition refused (unknown, not authorized) fails the request; the others
  // answer OPERATION_NOT_ATTEMPTED and nothing is added.
  auto snap = registry_->snapshot();
  std::set<TxnPartition> parts;
  bool refused = false;
  for (const auto& t : body.v3_and_below_topics) {
    const TopicInfo* topic = snap->find(t.name);
    const bool may = allowed(*req, Operation::kWrite, ResourceType::kTopic, t.name);
    auto& rt = resp->results_by_topic_v3_and_below.emplace_back();
    rt.name = t.name;
    for (int32_t p : t.partitions) {
      ErrorCode e = ErrorCode::kNone;
      if (!may) {
        e = ErrorCode::kTopicAuthorizationFailed;
      } else if (!topic || p < 0 || p >= topic->partitions || topic->internal) {
        e = ErrorCode::kUnknownTopicOrPartition;
      }
      refused |= e != ErrorCode::kNone;
      rt.results_by_partition.push_back({p, code(e)});
      parts.emplace(t.name, p);
    }
  }
  auto fill = [resp](ErrorCode e) {
    for (auto& t : resp->results_by_topic_v3_and_below) {
      for (auto& p : t.results_by_partition) {
        if (p.partition_error_code == 0) p.partition_error_code = code(e);
      }
    }
  };
  if (refused) {
    fill(ErrorCode::kOperationNotAttempted);
    respond(*req, *resp);
    return;
  }
  ErrorCode e = ErrorCode::kNone;
  if (!allowed(*req, Operation::kWrite, ResourceType::kTransactionalId,
               body.v3_and_below_transactional_id)) {
    e = ErrorCode::kTransactionalIdAuthorizationFailed;
  } else if (!txns_ready_.load(std::memory_order_acquire)) {
    e = ErrorCode::kCoordinatorNotAvailable;
  }
  if (e != ErrorCode::kNone) {
    fill(e);
    respond(*req, *resp);
    return;
  }
  txns_->add_partitions(body.v3_and_below_transactional_id, body.v3_and_below_producer_id,
                        body.v3_and_below_producer_epoch, std::move(parts),
                        [req, resp, fill, version](ErrorCode e) {
                          fill(fenced_for(e, version, 2));
                          respond(*req, *resp);
                        });
}

void Broker::handle_add_offsets_to_txn(std::shared_ptr<Request> req,
                                       const kafka::AddOffsetsToTxnRequest& body) {
  const int16_t version = req->header.api_version;
  auto answer = [req, version](ErrorCode e) {
    kafka::AddOffsetsToTxnResponse resp;
    resp.error_code = code(fenced_for(e, version, 2));
    respond(*req, resp);
  };
  if (!allowed(*req, Operation::kWrite, ResourceType::kTransactionalId, body.transactional_id)) {
    return answer(ErrorCode::kTransactionalIdAuthorizationFailed);
  }
  if (!allowed(*req, Operation::kRead, ResourceType::kGroup, body.group_id)) {
    return answer(ErrorCode::kGroupAuthorizationFailed);
  }
  if (!txns_ready_.load(std::memory_order_acquire) ||
      !groups_ready_.load(std::memory_order_acquire)) {
    return answer(ErrorCode::kCoordinatorNotAvailable);
  }
  // The group's __consumer_offsets partition joins the transaction: its marker commits or
  // drops the offsets TxnOffsetCommit wrote there.
  const int32_t p = groups_->partition_of(body.group_id);
  txns_->add_partitions(body.transactional_id, body.producer_id, body.producer_epoch,
                        {TxnPartition{GroupCoordinator::kTopic, p}}, answer);
}

void Broker::handle_end_txn(std::shared_ptr<Request> req, const kafka::EndTxnRequest& body) {
  const int16_t version = req->header.api_version;
  auto answer = [req, version](ErrorCode e) {
    kafka::EndTxnResponse resp;
    resp.error_code = code(fenced_for(e, version, 2));
    respond(*req, resp);
  };
  if (!allowed(*req, Operation::kWrite, ResourceType::kTransactionalId, body.transactional_id)) {
    return answer(ErrorCode::kTransactionalIdAuthorizationFailed);
  }
  if (!txns_ready_.load(std::memory_order_acquire)) {
    return answer(ErrorCode::kCoordinatorNotAvailable);
  }
  txns_->end_txn(body.transactional_id, body.producer_id, body.producer_epoch, body.committed,
                 answer);
}

// KIP-664 -------------------------------------------------------------------------------------

// ListTransactions goes to every broker (each answers for the ids it coordinates); ids the
// principal may not DESCRIBE are left out, as Kafka does.
void Broker::handle_list_transactions(std::shared_ptr<Request> req,
                                      const kafka::ListTransactionsRequest& body) {
  auto resp = std::make_shared<kafka::ListTransactionsResponse>();
  TxnCoordinator::ListFilter filter;
  for (const auto& name : body.state_filters) {
    if (auto s = txn_status_from_name(name)) {
      filter.states.insert(*s);
    } else {
      resp->unknown_state_filters.push_back(name);
    }
  }
  // Only unknown names asked for: nothing can match (Kafka answers an empty list).
  if (!body.state_filters.empty() && filter.states.empty()) return respond(*req, *resp);
  filter.producer_ids.insert(body.producer_id_filters.begin(), body.producer_id_filters.end());
  filter.min_duration_ms = body.duration_filter;
  if (!txns_ready_.load(std::memory_order_acquire)) {
    resp->error_code = code(ErrorCode::kCoordinatorNotAvailable);
    return respond(*req, *resp);
  }
  txns_->list(std::move(filter),
              [this, req, resp](ErrorCode e, std::vector<TxnCoordinator::View> found) {
                resp->error_code = code(e);
                for (const auto& v : found) {
                  if (!allowed(*req, Operation::kDescribe, ResourceType::kTransactionalId, v.id)) {
                    continue;
                  }
                  resp->transaction_states.push_back(
                      {v.id, v.meta.producer_id, txn_status_name(v.meta.status)});
                }
                respond(*req, *resp);
              });
}

// DescribeTransactions goes to each id's coordinator (FindCoordinator key type 1).
void Broker::handle_describe_transactions(std::shared_ptr<Request> req,
                                          const kafka::DescribeTransactionsRequest& body) {
  auto resp = std::make_shared<kafka::DescribeTransactionsResponse>();
  resp->transaction_states.resize(body.transactional_ids.size());
  struct Countdown {
    Countdown(size_t n, std::shared_ptr<Request> r,
              std::shared_ptr<kafka::DescribeTransactionsResponse> out)
        : left(n), req(std::move(r)), resp(std::move(out)) {}
    std::atomic<size_t> left;
    std::shared_ptr<Request> req;
    std::shared_ptr<kafka::DescribeTransactionsResponse> resp;
    void done() {
      if (left.fetch_sub(1) == 1) respond(*req, *resp);
    }
  };
  auto countdown = std::make_shared<Countdown>(body.transactional_ids.size() + 1, req, resp);
  for (size_t i = 0; i < body.transactional_ids.size(); ++i) {
    const std::string& id = body.transactional_ids[i];
    auto* slot = &resp->transaction_states[i];  // written by this id's task only
    slot->transactional_id = id;
    slot->transaction_start_time_ms = -1;
    slot->producer_id = -1;
    slot->producer_epoch = -1;
    if (!allowed(*req, Operation::kDescribe, ResourceType::kTransactionalId, id)) {
      slot->error_code = code(ErrorCode::kTransactionalIdAuthorizationFailed);
      countdown->done();
      continue;
    }
    if (!txns_ready_.load(std::memory_order_acquire)) {
      slot->error_code = code(ErrorCode::kCoordinatorNotAvailable);
      countdown->done();
      continue;
    }
    txns_->describe(id, [this, req, slot, countdown](ErrorCode e, const TxnCoordinator::View& v) {
      slot->error_code = code(e);
      if (e == ErrorCode::kNone) {
        const TxnMetadata& m = v.meta;
        slot->transaction_state = txn_status_name(m.status);
        slot->transaction_timeout_ms = m.timeout_ms;
        slot->transaction_start_time_ms = m.start_ms;
        slot->producer_id = m.producer_id;
        slot->producer_epoch = m.producer_epoch;
        for (const auto& [topic, partition] : m.partitions) {
          // Kafka shows only the topics the principal may DESCRIBE.
          if (!allowed(*req, Operation::kDescribe, ResourceType::kTopic, topic)) continue;
          if (slot->topics.empty() || slot->topics.back().topic != topic) {
            slot->topics.emplace_back().topic = topic;
          }
          slot->topics.back().partitions.push_back(partition);
        }
      }
      countdown->done();
    });
  }
  countdown->done();
}

// Markers -------------------------------------------------------------------------------------

void Broker::send_txn_markers(kafka::WriteTxnMarkersRequest request,
                              std::function<void(std::vector<TxnMarkerResult>)> done) {
  // One request per leader: this broker's partitions through write_txn_markers, the others'
  // over the transport. Partitions without a leader now answer NOT_LEADER_OR_FOLLOWER (the
  // coordinator tries them again).
  struct Sending {
    std::mutex mutex;
    std::vector<TxnMarkerResult> results;
    size_t left = 0;
    std::function<void(std::vector<TxnMarkerResult>)> done;
  };
  auto st = std::make_shared<Sending>();
  st->done = std::move(done);
  auto snap = registry_->snapshot();
  std::map<int32_t, kafka::WriteTxnMarkersRequest> by_leader;
  for (const auto& m : request.markers) {
    for (const auto& t : m.topics) {
      const TopicInfo* topic = snap->find(t.name);
      for (int32_t p : t.partition_indexes) {
        int32_t leader = -1;
        if (!topic || p < 0 || p >= topic->partitions) {
          st->results.push_back({t.name, p, ErrorCode::kUnknownTopicOrPartition});
          continue;
        }
        leader = topic->parts[static_cast<size_t>(p)].leader;
        if (leader < 0) {
          st->results.push_back({t.name, p, ErrorCode::kNotLeaderOrFollower});
          continue;
        }
        auto& r = by_leader[leader];
        if (r.markers.empty()) {
          auto& rm = r.markers.emplace_back(m);
          rm.topics.clear();
        }
        auto& rm = r.markers.back();
        if (rm.topics.empty() || rm.topics.back().name != t.name) {
          rm.topics.emplace_back().name = t.name;
        }
        rm.topics.back().partition_indexes.push_back(p);
      }
    }
  }
  st->left = by_leader.size() + 1;
  auto finish_one = [st](std::vector<TxnMarkerResult> results) {
    std::function<void(std::vector<TxnMarkerResult>)> done;
    std::vector<TxnMarkerResult> all;
    {
      std::lock_guard lock(st->mutex);
      for (auto& r : results) st->results.push_back(std::move(r));
      if (--st->left > 0) return;
      all = std::move(st->results);
      done = std::move(st->done);
    }
    done(std::move(all));
  };
  auto results_of = [](const kafka::WriteTxnMarkersResponse& resp) {
    std::vector<TxnMarkerResult> out;
    for (const auto& m : resp.markers) {
      for (const auto& t : m.topics) {
        for (const auto& p : t.partitions) {
          out.push_back({t.name, p.partition_index, static_cast<ErrorCode>(p.error_code)});
        }
      }
    }
    return out;
  };
  // Every partition sent to `leader` with one error (the call failed).
  auto all_failed = [](const kafka::WriteTxnMarkersRequest& r, ErrorCode e) {
    std::vector<TxnMarkerResult> out;
    for (const auto& m : r.markers) {
      for (const auto& t : m.topics) {
        for (int32_t p : t.partition_indexes) out.push_back({t.name, p, e});
      }
    }
    return out;
  };
  for (auto& entry : by_leader) {
    // Not a structured binding: clang 14 cannot capture one.
    const int32_t leader = entry.first;
    kafka::WriteTxnMarkersRequest& r = entry.second;
    if (leader == config_.node_id) {
      write_txn_markers(std::make_shared<kafka::WriteTxnMarkersRequest>(std::move(r)), true,
                        [finish_one, results_of](const kafka::WriteTxnMarkersResponse& resp) {
                          finish_one(results_of(resp));
                        });
      continue;
    }
    kafka::RequestHeader header;
    header.api_key = static_cast<int16_t>(kafka::ApiKey::kWriteTxnMarkers);
    header.api_version = kMarkersVersion;
    header.client_id = "sluice-txn-coordinator";
    kafka::EncodedFrame frame = kafka::encode_request(header, kafka::RequestBody(r));
    std::string bytes(reinterpret_cast<const char*>(frame.bytes.data()) + 4,
                      frame.bytes.size() - 4);
    cluster_->call_peer(
        leader, kTxnMarkersMethod, std::move(bytes), kMarkersCallTimeout,
        [finish_one, results_of, all_failed, r, leader](Result<std::string> reply) {
          if (!reply) {
            spdlog::debug("transaction markers to broker {}: {}", leader, reply.error().message);
            return finish_one(all_failed(r, ErrorCode::kNotLeaderOrFollower));
          }
          auto decoded = kafka::decode_response_frame(
              kafka::ApiKey::kWriteTxnMarkers, kMarkersVersion,
              Bytes(reinterpret_cast<const std::byte*>(reply->data()), reply->size()));
          const auto* resp =
              decoded ? std::get_if<kafka::WriteTxnMarkersResponse>(&decoded->body) : nullptr;
          if (!resp) return finish_one(all_failed(r, ErrorCode::kNotLeaderOrFollower));
          finish_one(results_of(*resp));
        });
  }
  finish_one({});
}

void Broker::serve_txn_markers(std::string request, cluster::ClusterNode::PeerReply reply) {
  auto frame = std::make_shared<std::string>(std::move(request));
  auto decoded = kafka::decode_request_frame(
      Bytes(reinterpret_cast<const std::byte*>(frame->data()), frame->size()));
  const auto* body = decoded ? std::get_if<kafka::WriteTxnMarkersRequest>(&decoded->body) : nullptr;
  if (!body) {
    spdlog::warn("a malformed transaction markers request from a peer was not answered");
    reply({});
    return;
  }
  const int32_t correlation = decoded->header.correlation_id;
  write_txn_markers(std::make_shared<kafka::WriteTxnMarkersRequest>(*body), true,
                    [reply, correlation](const kafka::WriteTxnMarkersResponse& resp) {
                      kafka::EncodedFrame out =
                          kafka::encode_response(correlation, kMarkersVersion, resp);
                      reply(std::string(reinterpret_cast<const char*>(out.bytes.data()) + 4,
                                        out.bytes.size() - 4));
                    });
}

}  // namespace sluice::broker
