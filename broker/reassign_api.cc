// The Kafka APIs of moves and leader elections: AlterPartitionReassignments,
// ListPartitionReassignments, ElectLeaders, and DescribeLogDirs (the replicas this broker holds
// and their sizes). Changes go to the controller through the TopicRegistry, which validates
// them and answers per partition; the moves themselves are carried out by the partitions'
// leaders (reassign.cc).
#include <spdlog/spdlog.h>
#include <sys/statvfs.h>

#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <filesystem>
#include <map>
#include <set>

#include "broker/broker.h"
#include "broker/kafka_errors.h"

namespace sluice::broker {

namespace asio = boost::asio;
using kafka::ErrorCode;

namespace {

constexpr int8_t kElectPreferred = 0;
constexpr int8_t kElectUnclean = 1;

using TopicPartitionId = std::pair<std::string, int32_t>;

// Polls the metadata (every 20 ms, on `ctx`) until each of `partitions` is led by its
// preferred replica or the deadline passes; `done` gets those that are not (yet).
void when_preferred_lead(const TopicRegistry& registry, asio::io_context& ctx,
                         std::vector<TopicPartitionId> partitions,
                         std::chrono::steady_clock::time_point deadline,
                         std::function<void(std::vector<TopicPartitionId>)> done) {
  auto snap = registry.snapshot();
  std::erase_if(partitions, [&](const TopicPartitionId& tp) {
    const PartitionInfo* p = snap->partition(tp.first, tp.second);
    return p == nullptr || p->replicas.empty() || p->leader == p->replicas[0];
  });
  if (partitions.empty() || std::chrono::steady_clock::now() >= deadline) {
    done(std::move(partitions));
    return;
  }
  auto timer = std::make_shared<asio::steady_timer>(ctx, std::chrono::milliseconds(20));
  timer->async_wait([&registry, &ctx, timer, partitions = std::move(partitions), deadline,
                     done](boost::system::error_code ec) mutable {
    if (ec) {  // shutting down: answer with what is known
      done(std::move(partitions));
      return;
    }
    when_preferred_lead(registry, ctx, std::move(partitions), deadline, std::move(done));
  });
}

std::vector<int32_t> minus(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  std::vector<int32_t> out;
  for (int32_t x : a) {
    if (std::find(b.begin(), b.end(), x) == b.end()) out.push_back(x);
  }
  return out;
}

}  // namespace

void Broker::handle_alter_partition_reassignments(
    std::shared_ptr<Request> req, const kafka::AlterPartitionReassignmentsRequest& body) {
  using Response = kafka::AlterPartitionReassignmentsResponse;
  auto resp = std::make_shared<Response>();
  // Where each change sent to the controller answers: (topic slot, partition slot).
  auto slots = std::make_shared<std::vector<std::pair<size_t, size_t>>>();
  std::vector<TopicRegistry::Reassignment> changes;
  resp->responses.resize(body.topics.size());
  for (size_t ti = 0; ti < body.topics.size(); ++ti) {
    const auto& t = body.topics[ti];
    auto& rt = resp->responses[ti];
    rt.name = t.name;
    rt.partitions.resize(t.partitions.size());
    for (size_t pi = 0; pi < t.partitions.size(); ++pi) {
      const auto& p = t.partitions[pi];
      auto& rp = rt.partitions[pi];
      rp.partition_index = p.partition_index;
      if (p.replicas && p.replicas->empty()) {
        // The registry reads an empty target as a cancel; Kafka's is null.
        rp.error_code = code(ErrorCode::kInvalidReplicaAssignment);
        rp.error_message = "the target replica list is empty (null cancels a move)";
        continue;
      }
      // Internal topics move too (as in Kafka, and a decommission drains them anyway): unlike
      // deleting or growing them, a move changes nothing a client sees.
      changes.push_back({t.name, p.partition_index, p.replicas.value_or(std::vector<int32_t>{})});
      slots->push_back({ti, pi});
    }
  }
  if (changes.empty()) {
    respond(*req, *resp);
    return;
  }
  registry_->reassign(
      changes,
      [req, resp, slots](Result<std::vector<TopicRegistry::PartitionError>, TopicError> r) {
        if (!r) {
          // The controller did not answer (no quorum, timeout): nothing is known to have started.
          resp->error_code = code(r.error().code);
          resp->error_message = r.error().message;
          for (const auto& [ti, pi] : *slots) {
            auto& rp = resp->responses[ti].partitions[pi];
            rp.error_code = code(r.error().code);
            rp.error_message = r.error().message;
          }
        } else {
          for (size_t i = 0; i < slots->size(); ++i) {
            auto& rp = resp->responses[(*slots)[i].first].partitions[(*slots)[i].second];
            if (i >= r->size()) {
              rp.error_code = code(ErrorCode::kUnknownServerError);
              rp.error_message = "the controller gave no result for this partition";
              continue;
            }
            const TopicError& e = (*r)[i].error;
            rp.error_code = code(e.code);
            if (e.code != ErrorCode::kNone) rp.error_message = e.message;
          }
        }
        respond(*req, *resp);
      });
}

void Broker::handle_list_partition_reassignments(
    std::shared_ptr<Request> req, const kafka::ListPartitionReassignmentsRequest& body) {
  using Response = kafka::ListPartitionReassignmentsResponse;
  auto snap = registry_->snapshot();
  Response resp;
  auto add = [&](const std::string& name, const TopicInfo& t, int32_t index,
                 Response::OngoingTopicReassignment& out) {
    if (index < 0 || index >= static_cast<int32_t>(t.parts.size())) return;
    const PartitionInfo& p = t.parts[static_cast<size_t>(index)];
    if (!p.moving()) return;
    (void)name;
    Response::OngoingPartitionReassignment o;
    o.partition_index = index;
    o.replicas = p.replicas;  // the whole set: the target, then those leaving
    o.adding_replicas = minus(p.adding, p.removing);
    o.removing_replicas = p.removing;
    out.partitions.push_back(std::move(o));
  };
  auto topic_out = [&](const std::string& name, const TopicInfo& t,
                       const std::vector<int32_t>* indexes) {
    Response::OngoingTopicReassignment out;
    out.name = name;
    if (indexes) {
      for (int32_t i : *indexes) add(name, t, i, out);
    } else {
      for (int32_t i = 0; i < static_cast<int32_t>(t.parts.size()); ++i) add(name, t, i, out);
    }
    // As Kafka: only partitions with a move in progress; unknown ones are left out.
    if (!out.partitions.empty()) resp.topics.push_back(std::move(out));
  };
  if (!body.topics) {
    for (const auto& [name, t] : snap->topics) topic_out(name, t, nullptr);
  } else {
    for (const auto& t : *body.topics) {
      if (const TopicInfo* info = snap->find(t.name))
        topic_out(t.name, *info, &t.partition_indexes);
    }
  }
  respond(*req, resp);
}

void Broker::handle_elect_leaders(std::shared_ptr<Request> req,
                                  const kafka::ElectLeadersRequest& body) {
  using Response = kafka::ElectLeadersResponse;
  auto resp = std::make_shared<Response>();
  const bool all = !body.topic_partitions.has_value();
  // The partitions asked for, grouped by topic in the request's order.
  std::vector<std::pair<std::string, std::vector<int32_t>>> asked;
  if (all) {
    auto snap = registry_->snapshot();
    for (const auto& [name, t] : snap->topics) {
      std::vector<int32_t> ids;
      for (int32_t i = 0; i < t.partitions; ++i) ids.push_back(i);
      asked.emplace_back(name, std::move(ids));
    }
  } else {
    std::map<std::string, size_t> at;
    for (const auto& t : *body.topic_partitions) {
      auto [it, fresh] = at.emplace(t.topic, asked.size());
      if (fresh) asked.emplace_back(t.topic, std::vector<int32_t>{});
      auto& ids = asked[it->second].second;
      for (int32_t p : t.partition_id) {
        if (std::find(ids.begin(), ids.end(), p) == ids.end()) ids.push_back(p);
      }
    }
  }
  std::vector<std::pair<std::string, int32_t>> partitions;
  resp->replica_election_results.reserve(asked.size());
  for (const auto& [topic, ids] : asked) {
    Response::ReplicaElectionResult r;
    r.topic = topic;
    for (int32_t id : ids) {
      Response::PartitionResult pr;
      pr.partition_id = id;
      if (body.election_type == kElectUnclean) {
        pr.error_code = code(ErrorCode::kInvalidRequest);
        pr.error_message =
            "unclean elections are not supported: Raft never elects a replica without the "
            "committed log";
      } else if (body.election_type != kElectPreferred) {
        pr.error_code = code(ErrorCode::kInvalidRequest);
        pr.error_message = "unknown election type " + std::to_string(body.election_type);
      } else {
        partitions.emplace_back(topic, id);
      }
      r.partition_result.push_back(std::move(pr));
    }
    resp->replica_election_results.push_back(std::move(r));
  }
  // Drops what needs no answer: for "all partitions", as Kafka, those already led by their
  // preferred replica; then topics left without partitions.
  auto finish = [req, resp, all] {
    auto& results = resp->replica_election_results;
    if (all) {
      for (auto& r : results) {
        std::erase_if(r.partition_result, [](const Response::PartitionResult& p) {
          return p.error_code == code(ErrorCode::kElectionNotNeeded);
        });
      }
      std::erase_if(results, [](const Response::ReplicaElectionResult& r) {
        return r.partition_result.empty();
      });
    }
    respond(*req, *resp);
  };
  if (partitions.empty()) {
    finish();
    return;
  }
  // As Kafka, the answer comes once the elections are done: the preferred replicas lead (the
  // partitions' leaders hand leadership over, reassign.cc), or at the request's deadline
  // (REQUEST_TIMED_OUT for those not done). A timeout of 0 answers once they are accepted.
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(std::clamp(body.timeout_ms, 0, 300000));
  registry_->elect_preferred(
      partitions, [this, resp, finish, partitions,
                   deadline](Result<std::vector<TopicRegistry::PartitionError>, TopicError> r) {
        // Results come in the order asked; find each partition's slot by name and index.
        std::map<std::pair<std::string, int32_t>, Response::PartitionResult*> slot;
        for (auto& t : resp->replica_election_results) {
          for (auto& p : t.partition_result) slot[{t.topic, p.partition_id}] = &p;
        }
        if (!r) {
          resp->error_code = code(r.error().code);
          for (const auto& tp : partitions) {
            slot[tp]->error_code = code(r.error().code);
            slot[tp]->error_message = r.error().message;
          }
        } else {
          for (size_t i = 0; i < partitions.size(); ++i) {
            Response::PartitionResult* p = slot[partitions[i]];
            if (i >= r->size()) {
              p->error_code = code(ErrorCode::kUnknownServerError);
              p->error_message = "the controller gave no result for this partition";
              continue;
            }
            const TopicError& e = (*r)[i].error;
            p->error_code = code(e.code);
            if (e.code != ErrorCode::kNone) p->error_message = e.message;
          }
        }
        std::vector<TopicPartitionId> accepted;
        for (const auto& tp : partitions) {
          if (slot[tp]->error_code == 0) accepted.push_back(tp);
        }
        if (accepted.empty() || shards_.empty() || std::chrono::steady_clock::now() > deadline) {
          finish();
          return;
        }
        when_preferred_lead(
            *registry_, shards_[0]->shard.context(), std::move(accepted), deadline,
            [resp, finish](std::vector<TopicPartitionId> late) {
              for (auto& t : resp->replica_election_results) {
                for (auto& p : t.partition_result) {
                  if (std::find(late.begin(), late.end(),
                                TopicPartitionId{t.topic, p.partition_id}) == late.end()) {
                    continue;
                  }
                  p.error_code = code(ErrorCode::kRequestTimedOut);
                  p.error_message =
                      "the preferred replica does not lead yet (it leads once it has caught up)";
                }
              }
              finish();
            });
      });
}

void Broker::handle_describe_log_dirs(std::shared_ptr<Request> req,
                                      const kafka::DescribeLogDirsRequest& body) {
  using Response = kafka::DescribeLogDirsResponse;
  // Null: every partition this broker holds; else the ones named (and held here).
  std::optional<std::map<std::string, std::set<int32_t>>> wanted;
  if (body.topics) {
    wanted.emplace();
    for (const auto& t : *body.topics) {
      auto& s = (*wanted)[t.topic];
      s.insert(t.partitions.begin(), t.partitions.end());
    }
  }
  struct Found {
    TopicPartition tp;
    int64_t size = 0;
    int64_t lag = 0;
  };
  // One list per shard, each filled on its own shard's thread.
  auto found = std::make_shared<std::vector<std::vector<Found>>>(shards_.size());
  auto left = std::make_shared<std::atomic<size_t>>(shards_.size());
  auto answer = [this, req, found] {
    Response resp;
    Response::DescribeLogDirsResult dir;
    std::error_code ec;
    auto path = std::filesystem::absolute(config_.data_dir, ec);
    dir.log_dir = ec ? config_.data_dir : path.lexically_normal().string();
    struct statvfs vfs {};
    if (statvfs(config_.data_dir.c_str(), &vfs) == 0) {
      dir.total_bytes = static_cast<int64_t>(vfs.f_blocks) * static_cast<int64_t>(vfs.f_frsize);
      dir.usable_bytes = static_cast<int64_t>(vfs.f_bavail) * static_cast<int64_t>(vfs.f_frsize);
    }
    std::map<TopicPartition, const Found*> sorted;
    for (const auto& list : *found) {
      for (const auto& f : list) sorted[f.tp] = &f;
    }
    for (const auto& [tp, f] : sorted) {
      if (dir.topics.empty() || dir.topics.back().name != tp.topic) {
        dir.topics.emplace_back();
        dir.topics.back().name = tp.topic;
      }
      Response::DescribeLogDirsPartition p;
      p.partition_index = tp.partition;
      p.partition_size = f->size;
      p.offset_lag = f->lag;
      p.is_future_key = false;
      dir.topics.back().partitions.push_back(p);
    }
    resp.results.push_back(std::move(dir));
    respond(*req, resp);
  };
  if (shards_.empty()) {
    answer();
    return;
  }
  for (size_t i = 0; i < shards_.size(); ++i) {
    ShardState* ss = shards_[i].get();
    ss->shard.post([ss, i, found, left, answer, wanted] {
      for (const auto& [tp, p] : ss->partitions) {
        if (p->deleting || !p->log) continue;
        if (wanted) {
          auto w = wanted->find(tp.topic);
          if (w == wanted->end() || !w->second.count(tp.partition)) continue;
        }
        Found f;
        f.tp = tp;
        f.size = static_cast<int64_t>(p->log->size_bytes());
        // Kafka's definition: how far the log end is behind the high watermark, never
        // negative (so 0 on a leader; a follower learns of the commit only up to its own end).
        if (p->replica) {
          f.lag = std::max<int64_t>(0, p->replica->high_watermark() - p->replica->log_end());
        }
        (*found)[i].push_back(std::move(f));
      }
      if (left->fetch_sub(1) == 1) answer();
    });
  }
}

}  // namespace sluice::broker
