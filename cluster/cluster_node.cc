#include "cluster/cluster_node.h"

#include "cluster/acl.h"
#include "cluster/quotas.h"
#include "cluster/scram.h"

#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <future>
#include <set>

#include "cluster/balance.h"
#include "common/random.h"
#include "partitioner/placement.h"

namespace sluice::cluster {

namespace asio = boost::asio;
using kafka::ErrorCode;
using Clock = std::chrono::steady_clock;

namespace {

constexpr uint32_t kControllerMethod = 1;
constexpr uint32_t kRequestVersion = 1;
constexpr int64_t kAttemptMs = 750;  // one try at one controller

std::string new_cluster_id() {
  // Kafka's cluster ids are 22 characters of URL-safe base64 of a random UUID.
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string id;
  for (int i = 0; i < 22; ++i) id.push_back(kAlphabet[random_u64() % 64]);
  return id;
}

pb::ControllerResponse error_response(ErrorCode code, std::string message, int32_t hint = -1) {
  pb::ControllerResponse r;
  r.set_error_code(static_cast<int32_t>(code));
  r.set_error_message(std::move(message));
  r.set_leader_hint(hint);
  return r;
}

pb::ControllerResponse from_apply(const ApplyResult& a, uint64_t index) {
  pb::ControllerResponse r;
  r.set_error_code(static_cast<int32_t>(a.code));
  r.set_error_message(a.message);
  r.set_leader_hint(-1);
  r.set_applied_index(index);
  return r;
}

}  // namespace

Result<std::vector<Voter>> parse_voters(const std::string& text) {
  std::vector<Voter> out;
  std::set<int32_t> ids;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = text.find(',', start);
    const std::string item =
        text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    start = comma == std::string::npos ? text.size() + 1 : comma + 1;
    if (item.empty()) continue;
    const size_t at = item.find('@');
    const size_t colon = item.rfind(':');
    if (at == std::string::npos || colon == std::string::npos || colon < at) {
      return error(2, "controller voter '" + item + "' is not ID@HOST:PORT");
    }
    Voter v;
    try {
      size_t used = 0;
      v.id = std::stoi(item.substr(0, at), &used);
      if (used != at || v.id < 0) throw std::invalid_argument("id");
      const int port = std::stoi(item.substr(colon + 1), &used);
      if (used != item.size() - colon - 1 || port <= 0 || port > 65535) {
        throw std::invalid_argument("port");
      }
      v.port = static_cast<uint16_t>(port);
    } catch (const std::exception&) {
      return error(2, "controller voter '" + item + "' is not ID@HOST:PORT");
    }
    v.host = item.substr(at + 1, colon - at - 1);
    if (v.host.empty()) return error(2, "controller voter '" + item + "' has no host");
    if (!ids.insert(v.id).second) {
      return error(2, "controller voter id " + std::to_string(v.id) + " is listed twice");
    }
    out.push_back(v);
  }
  std::sort(out.begin(), out.end(), [](const Voter& a, const Voter& b) { return a.id < b.id; });
  return out;
}

struct ClusterNode::Outstanding {
  pb::ControllerRequest req;
  Clock::time_point deadline;
  Done done;
  int32_t target = -1;
  bool wait_applied = true;
};

ClusterNode::ClusterNode(ClusterConfig config)
    : config_(std::move(config)), work_(asio::make_work_guard(io_)) {
  image_ = state_.shared();
}

ClusterNode::~ClusterNode() {
  work_.reset();
  io_.stop();
  if (thread_.joinable()) thread_.join();
}

Status ClusterNode::start() {
  incarnation_ = random_u64() | 1;
  const bool single = config_.voters.empty();
  if (single) {
    config_.voters.push_back(
        Voter{config_.node_id, config_.rpc_advertised_host, config_.rpc_advertised_port});
  }
  if (config_.rpc_advertised_host.empty()) {
    config_.rpc_advertised_host = config_.rpc_listen_host;
    config_.rpc_advertised_port = config_.rpc_listen_port;
  }
  voter_ = std::any_of(config_.voters.begin(), config_.voters.end(),
                       [&](const Voter& v) { return v.id == config_.node_id; });

  transport::TransportConfig tc;
  tc.self_id = config_.node_id;
  tc.tls = config_.rpc_tls;
  transport_ = std::make_unique<transport::Transport>(io_, tc);
  // A one-node cluster with no inter-broker listener asked for needs no port.
  if (!single || config_.rpc_listen_port != 0) {
    if (auto s = transport_->listen(config_.rpc_listen_host, config_.rpc_listen_port); !s) {
      return error(1, "cannot listen for brokers on " + config_.rpc_listen_host + ":" +
                          std::to_string(config_.rpc_listen_port) + ": " + s.error().message);
    }
    rpc_port_ = transport_->port();
    if (config_.rpc_advertised_port == 0) config_.rpc_advertised_port = transport_->port();
  }
  for (const Voter& v : config_.voters) {
    if (v.id != config_.node_id) transport_->set_peer(v.id, v.host, v.port);
  }
  transport_->on_message([this](uint64_t group, raft::Message&& m) {
    if (group == 0) {
      if (group_) group_->step(m);
    } else if (partition_handler_) {
      partition_handler_(group, std::move(m));
    }
  });
  transport_->on_peer_lost([this](int32_t peer) {
    if (peer_lost_handler_) peer_lost_handler_(peer);
  });
  transport_->on_call([this](int32_t from, uint32_t method, std::string request,
                             transport::Transport::Reply reply) {
    if (auto h = peer_handlers_.find(method); h != peer_handlers_.end()) {
      // The reply may come from any thread: it is handed to the transport on this one.
      h->second(from, std::move(request), [this, reply](std::string response) {
        asio::post(io_, [this, reply, response = std::move(response)]() mutable {
          if (!stopping_) reply(std::move(response));
        });
      });
      return;
    }
    pb::ControllerRequest req;
    if (method != kControllerMethod || !req.ParseFromString(request)) {
      reply(error_response(ErrorCode::kInvalidRequest, "malformed controller request")
                .SerializeAsString());
      return;
    }
    serve(from, std::move(req),
          [reply](pb::ControllerResponse resp) { reply(resp.SerializeAsString()); });
  });
  if (voter_) {
    if (auto s = start_controller(); !s) return s;
  }
  ticker_ = std::make_unique<asio::steady_timer>(io_);
  thread_ = std::thread([this] {
    asio::post(io_, [this] {
      if (voter_ && config_.voters.size() == 1) group_->campaign();
      tick();
    });
    io_.run();
  });
  return {};
}

void ClusterNode::set_rpc_tls(std::shared_ptr<boost::asio::ssl::context> tls) {
  SLUICE_ASSERT(config_.rpc_tls && tls);
  asio::post(io_, [this, tls = std::move(tls)]() mutable {
    if (transport_) transport_->set_tls(std::move(tls));
  });
}

Status ClusterNode::start_controller() {
  storage_ = std::make_unique<raft::FileRaftStorage>(config_.data_dir + "/controller");
  raft::Config rc;
  rc.id = raft::NodeId(config_.node_id);
  rc.seed = random_u64();
  rc.election_ticks = config_.election_ticks;
  rc.heartbeat_ticks = 1;
  raft::ConfState initial;
  for (const Voter& v : config_.voters) initial.voters.push_back(raft::NodeId(v.id));
  raft::GroupCallbacks cb;
  cb.send = [this](const raft::Message& m) { transport_->send(0, m); };
  cb.apply = [this](const raft::Entry& e) { apply_entry(e); };
  cb.applied = [this] { entries_applied(); };
  cb.restore = [this](const raft::Snapshot& snap) -> Status {
    if (!state_.restore(snap.data.text())) return error(1, "malformed metadata snapshot");
    spdlog::info("controller: metadata image restored from the snapshot at index {}",
                 *snap.index);
    publish(state_.shared());
    return {};
  };
  cb.on_change = [this] { on_raft_change(); };
  group_ = std::make_unique<raft::RaftGroup>(0, rc, *storage_, std::move(cb));
  if (auto s = group_->start(initial); !s) {
    return error(1, "controller state in " + config_.data_dir + "/controller: " +
                        s.error().message +
                        ". Restore it from a backup, or restart with --rebuild-metadata to "
                        "rebuild the topics from the partition directories");
  }
  if (storage_->truncated_bytes() > 0) {
    spdlog::warn("controller log: cut a torn tail of {} bytes", storage_->truncated_bytes());
  }
  return {};
}

Status ClusterNode::wait_ready(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  auto last_note = Clock::now();
  while (!ready_.load()) {
    if (Clock::now() > deadline) {
      return error(1, "not registered with the controller quorum after " +
                          std::to_string(timeout.count() / 1000) +
                          " s: check that a majority of --controller.voters is running and "
                          "reachable on its inter-broker port");
    }
    if (Clock::now() - last_note > std::chrono::seconds(5)) {
      last_note = Clock::now();
      spdlog::info("waiting for the controller quorum (leader {}, term {})", leader_.load(),
                   term_.load());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return {};
}

void ClusterNode::stop() {
  if (!thread_.joinable()) return;
  // Controlled shutdown: fenced now rather than after the session timeout, and controller
  // leadership handed to another voter.
  if (ready_.load()) {
    asio::post(io_, [this] { shutting_down_ = true; });  // no heartbeat may unfence us now
    auto fenced = std::make_shared<std::promise<void>>();
    auto answered = fenced->get_future();
    pb::ControllerRequest req;
    req.set_shutdown_broker(config_.node_id);
    request(req, std::chrono::milliseconds(2000),
            [fenced](const pb::ControllerResponse&) { fenced->set_value(); });
    answered.wait_for(std::chrono::seconds(3));
  }
  std::promise<void> handed;
  asio::post(io_, [this, &handed] {
    stopping_ = true;
    if (group_ && group_->is_leader() && config_.voters.size() > 1) {
      for (const Voter& v : config_.voters) {
        if (v.id == config_.node_id) continue;
        if (group_->transfer_leadership(raft::NodeId(v.id))) {
          group_->process();
          break;
        }
      }
    }
    handed.set_value();
  });
  handed.get_future().wait();
  if (group_ && config_.voters.size() > 1) {
    // Give the transfer a moment to complete (TimeoutNow sent, new leader elected).
    for (int i = 0; i < 40 && leader_.load() == config_.node_id; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
  }
  std::promise<void> closed;
  asio::post(io_, [this, &closed] {
    ticker_->cancel();
    transport_->close();
    closed.set_value();
  });
  closed.get_future().wait();
  work_.reset();
  io_.stop();
  thread_.join();
}

std::shared_ptr<const pb::Image> ClusterNode::image() const {
  std::lock_guard lock(image_mutex_);
  return image_;
}

void ClusterNode::on_image(std::function<void(std::shared_ptr<const pb::Image>)> callback) {
  std::promise<void> added;
  auto add = [this, &added, &callback] {
    listeners_.push_back(std::move(callback));
    listeners_.back()(image());
    added.set_value();
  };
  if (thread_.joinable()) {
    asio::post(io_, add);
    added.get_future().wait();
  } else {
    add();
  }
}

void ClusterNode::publish(std::shared_ptr<const pb::Image> image) {
  {
    std::lock_guard lock(image_mutex_);
    if (image_ && image->applied_index() < image_->applied_index() &&
        image->cluster_id() == image_->cluster_id()) {
      return;  // an older image (a late heartbeat answer)
    }
    image_ = image;
  }
  connect_peers(*image);
  for (auto& l : listeners_) l(image);
  const uint64_t applied = image->applied_index();
  while (!waiting_.empty() && waiting_.begin()->first <= applied) {
    auto fn = std::move(waiting_.begin()->second.fn);
    waiting_.erase(waiting_.begin());
    fn(true);
  }
  auto self = image->brokers().find(config_.node_id);
  if (!ready_.load() && self != image->brokers().end() &&
      self->second.incarnation() == incarnation_ && !image->cluster_id().empty()) {
    ready_ = true;
  }
}

void ClusterNode::after_applied(uint64_t index, Clock::time_point deadline,
                                std::function<void(bool)> fn) {
  if (image()->applied_index() >= index) {
    fn(true);
    return;
  }
  waiting_.emplace(index, Waiter{deadline, std::move(fn)});
  // An observer learns images from heartbeat answers: ask now rather than at the next beat.
  if (!voter_ && !heartbeat_in_flight_) heartbeat();
}

QuorumStatus ClusterNode::quorum_status() const {
  std::lock_guard lock(status_mutex_);
  return status_;
}

void ClusterNode::refresh_status() {
  QuorumStatus st;
  st.leader = leader_.load();
  st.term = term_.load();
  auto img = image();
  for (const Voter& v : config_.voters) {
    QuorumStatus::Replica r{v.id, -1};
    if (group_) {
      if (group_->is_leader()) {
        if (const auto* pr = group_->node().progress(raft::NodeId(v.id))) {
          r.log_end = static_cast<int64_t>(pr->match);
        }
      } else if (v.id == config_.node_id) {
        r.log_end = static_cast<int64_t>(*group_->status().last_index);
      }
    }
    st.voters.push_back(r);
  }
  st.commit = group_ ? *group_->status().commit : img->applied_index();
  for (const auto& [id, b] : img->brokers()) {
    const bool is_voter = std::any_of(config_.voters.begin(), config_.voters.end(),
                                      [id = id](const Voter& v) { return v.id == id; });
    if (!is_voter) st.observers.push_back({id, -1});
  }
  std::lock_guard lock(status_mutex_);
  status_ = std::move(st);
}

void ClusterNode::tick() {
  if (stopping_) return;
  const auto now = Clock::now();
  refresh_status();
  if (group_) {
    group_->tick();
    if (group_->is_leader()) {
      check_sessions();
      if (now >= next_balance_) {
        next_balance_ = now + std::chrono::milliseconds(config_.balance_interval_ms);
        balance_step();
      }
    }
    (void)group_->maybe_compact(config_.snapshot_every, [this] {
      return raft::Payload::copy_of(state_.serialize());
    });
  }
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if (it->second.deadline > now) {
      ++it;
      continue;
    }
    auto fn = std::move(it->second.fn);
    it = waiting_.erase(it);
    fn(false);
  }
  if (!registered_) {
    if (now >= next_register_) register_self();
  } else if (now >= next_heartbeat_ && !heartbeat_in_flight_ && !shutting_down_) {
    heartbeat();
  }
  if (transport_) {
    const auto t = transport_->stats();
    rpc_bytes_in_.store(t.bytes_in, std::memory_order_relaxed);
    rpc_bytes_out_.store(t.bytes_out, std::memory_order_relaxed);
    rpc_file_bytes_out_.store(t.file_bytes_out, std::memory_order_relaxed);
    rpc_frames_in_.store(t.frames_in, std::memory_order_relaxed);
    rpc_frames_out_.store(t.frames_out, std::memory_order_relaxed);
    rpc_dropped_.store(t.dropped, std::memory_order_relaxed);
  }
  ticker_->expires_after(std::chrono::milliseconds(config_.tick_ms));
  ticker_->async_wait([this](boost::system::error_code ec) {
    if (!ec) tick();
  });
}

void ClusterNode::register_self() {
  next_register_ = Clock::now() + std::chrono::seconds(5);
  pb::ControllerRequest req;
  pb::Broker* b = req.mutable_register_broker();
  b->set_id(config_.node_id);
  b->set_rack(config_.rack);
  b->mutable_kafka()->set_host(config_.kafka_host);
  b->mutable_kafka()->set_port(config_.kafka_port);
  for (const auto& [name, address] : config_.kafka_listeners) {
    pb::Endpoint& e = (*b->mutable_listeners())[name];
    e.set_host(address.host);
    e.set_port(address.port);
  }
  b->mutable_rpc()->set_host(config_.rpc_advertised_host);
  b->mutable_rpc()->set_port(config_.rpc_advertised_port);
  b->set_incarnation(incarnation_);
  request(req, std::chrono::milliseconds(5000), [this](const pb::ControllerResponse& resp) {
    if (resp.error_code() != 0) {
      next_register_ = Clock::now() + std::chrono::milliseconds(200);
      return;
    }
    registered_ = true;
    next_heartbeat_ = Clock::now() + std::chrono::milliseconds(config_.heartbeat_interval_ms);
    spdlog::info("registered with the controller (leader {}) as broker {}", leader_.load(),
                 config_.node_id);
  });
}

void ClusterNode::heartbeat() {
  heartbeat_in_flight_ = true;
  next_heartbeat_ = Clock::now() + std::chrono::milliseconds(config_.heartbeat_interval_ms);
  auto op = std::make_shared<Outstanding>();
  pb::Heartbeat* h = op->req.mutable_heartbeat();
  h->set_id(config_.node_id);
  h->set_incarnation(incarnation_);
  h->set_applied_index(voter_ ? UINT64_MAX : image()->applied_index());
  op->req.set_version(kRequestVersion);
  op->deadline = Clock::now() + std::chrono::milliseconds(config_.heartbeat_interval_ms * 2);
  op->wait_applied = false;
  op->done = [this](pb::ControllerResponse resp) {
    heartbeat_in_flight_ = false;
    if (resp.unknown_broker()) {
      spdlog::info("the controller does not know this broker's current start: registering again");
      registered_ = false;
      next_register_ = Clock::now();
      return;
    }
    if (!voter_ && resp.term() > 0) term_ = resp.term();
    if (!voter_ && !resp.image().empty()) {
      auto img = std::make_shared<pb::Image>();
      if (img->ParseFromString(resp.image())) publish(std::move(img));
    }
    if (!waiting_.empty() && !voter_) next_heartbeat_ = Clock::now();
  };
  send_request(std::move(op));
}

void ClusterNode::request(pb::ControllerRequest req, std::chrono::milliseconds timeout,
                          Done done) {
  auto op = std::make_shared<Outstanding>();
  req.set_version(kRequestVersion);
  op->req = std::move(req);
  op->deadline = Clock::now() + timeout;
  op->done = std::move(done);
  asio::post(io_, [this, op] { send_request(op); });
}

void ClusterNode::send_request(std::shared_ptr<Outstanding> op) {
  const auto now = Clock::now();
  if (now >= op->deadline || stopping_) {
    op->done(error_response(ErrorCode::kRequestTimedOut,
                            "no controller leader answered in time (leader " +
                                std::to_string(leader_.load()) + ")"));
    return;
  }
  int32_t target = op->target >= 0 ? op->target : leader_.load();
  if (target < 0) target = config_.voters[voter_cursor_++ % config_.voters.size()].id;
  op->target = -1;
  auto handle = [this, op, target](pb::ControllerResponse resp) {
    const auto code = static_cast<ErrorCode>(resp.error_code());
    const bool retry = code == ErrorCode::kNotController;
    if (retry) {
      if (resp.leader_hint() >= 0 && resp.leader_hint() != target) {
        op->target = resp.leader_hint();
        if (!voter_) leader_ = resp.leader_hint();
      } else if (!voter_) {
        leader_ = -1;
      }
      auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(
                                                                 op->target >= 0 ? 5 : 100));
      timer->async_wait([this, op, timer](boost::system::error_code) { send_request(op); });
      return;
    }
    if (!voter_ && code != ErrorCode::kRequestTimedOut) leader_ = target;
    if (op->wait_applied && resp.applied_index() > 0) {
      const uint64_t index = resp.applied_index();
      after_applied(index, op->deadline + std::chrono::seconds(5), [op, resp](bool ok) {
        if (ok || resp.error_code() != 0) {
          op->done(resp);  // an error stands even if this broker has not caught up
        } else {
          op->done(error_response(ErrorCode::kRequestTimedOut,
                                  "the change is committed but this broker has not seen it yet"));
        }
      });
      return;
    }
    op->done(std::move(resp));
  };
  if (target == config_.node_id && voter_) {
    serve(config_.node_id, op->req, handle);
    return;
  }
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(op->deadline - now);
  // Short attempts: a controller answers within an fsync or two, and a dead or paused leader
  // should cost one attempt, not the request's whole deadline.
  transport_->call(target, kControllerMethod, op->req.SerializeAsString(),
                   std::min(left, std::chrono::milliseconds(kAttemptMs)),
                   [this, op, handle, target](Result<std::string> bytes) {
                     pb::ControllerResponse resp;
                     if (!bytes || !resp.ParseFromString(*bytes)) {
                       // Lost connection or timeout: try the next voter after a pause.
                       if (leader_.load() == target && !voter_) leader_ = -1;
                       voter_cursor_++;
                       auto timer = std::make_shared<asio::steady_timer>(
                           io_, std::chrono::milliseconds(50));
                       timer->async_wait(
                           [this, op, timer](boost::system::error_code) { send_request(op); });
                       return;
                     }
                     handle(std::move(resp));
                   });
}

// ---- Controller (voters) ----

void ClusterNode::apply_entry(const raft::Entry& e) {
  pb::Record rec;
  ApplyResult result;
  if (!rec.ParseFromArray(e.data.bytes().data(), static_cast<int>(e.data.size()))) {
    spdlog::error("controller log entry {} is not a metadata record; skipped", *e.index);
    result = ApplyResult{ErrorCode::kInvalidRequest, "malformed record", 0};
  } else {
    result = state_.apply(*e.index, rec);
  }
  applied_.push_back(Applied{*e.index, *e.term, std::move(result)});
}

void ClusterNode::entries_applied() {
  publish(state_.shared());
  // An answer may propose again, and a single voter commits and applies that at once, in
  // here: the outermost call answers those too, in log order.
  if (answering_) return;
  answering_ = true;
  while (!applied_.empty()) {
    std::vector<Applied> batch = std::move(applied_);
    applied_.clear();
    for (Applied& a : batch) {
      while (!pending_.empty() && pending_.begin()->first <= a.index) {
        auto it = pending_.begin();
        Pending p = std::move(it->second);
        const uint64_t index = it->first;
        pending_.erase(it);
        if (index == a.index && p.term == a.term) {
          p.done(a.result, index);
        } else {
          p.done(ApplyResult{ErrorCode::kNotController, "controller leadership changed", 0}, 0);
        }
      }
    }
  }
  answering_ = false;
}

void ClusterNode::on_raft_change() {
  const int32_t leader = *group_->leader();
  const uint64_t term = *group_->term();
  const bool changed = leader != leader_.load();
  leader_ = leader;
  term_ = term;
  if (changed) {
    spdlog::info("controller: leader is now {} (term {}){}", leader, term,
                 leader == config_.node_id ? ", this broker" : "");
  }
  if (!group_->is_leader()) {
    auto pending = std::move(pending_);
    pending_.clear();
    for (auto& [index, p] : pending) {
      p.done(ApplyResult{ErrorCode::kNotController, "controller leadership changed", 0}, 0);
    }
    last_seen_.clear();
    return;
  }
  if (changed) {
    // A new leader gives every broker a full session before fencing it.
    const auto now = Clock::now();
    for (const auto& [id, b] : state_.image().brokers()) last_seen_[id] = now;
    // A balance (a broker joining, a decommission) the last leader had not finished goes on
    // (balance_step checks; the image may still be catching up with the log now).
    resume_check_until_ = now + std::chrono::seconds(5);
    if (state_.image().cluster_id().empty()) {
      pb::Record rec;
      rec.mutable_set_cluster_id()->set_cluster_id(
          config_.cluster_id.empty() ? new_cluster_id() : config_.cluster_id);
      propose(rec, [](const ApplyResult&, uint64_t) {});
    }
  }
}

void ClusterNode::propose(const pb::Record& record,
                          std::function<void(const ApplyResult&, uint64_t)> done) {
  auto idx = group_->propose(raft::Payload::copy_of(record.SerializeAsString()));
  if (!idx) {
    done(ApplyResult{ErrorCode::kNotController,
                     std::string("controller cannot take the change: ") +
                         std::string(raft::to_string(idx.error())),
                     0},
         0);
    return;
  }
  pending_[**idx] = Pending{*group_->term(), std::move(done)};
  // Not at once: the proposals of a burst (CreateTopics of thousands of topics, each a
  // request of its own) go into one Ready, one controller log sync and one published image.
  if (!process_posted_) {
    process_posted_ = true;
    asio::post(io_, [this] {
      process_posted_ = false;
      if (group_) group_->process();
    });
  }
}

void ClusterNode::check_sessions() {
  const auto now = Clock::now();
  static thread_local std::set<std::pair<int32_t, uint64_t>> fencing;
  // Held: propose() may commit and apply at once (a single voter) and replace the state's
  // image in the middle of this loop (it did: a segfault after 2,500 auto-created topics
  // kept the cluster thread busy past the broker's own session timeout).
  const std::shared_ptr<const pb::Image> image = state_.shared();
  for (const auto& [id, b] : image->brokers()) {
    if (b.fenced()) continue;
    if (id == config_.node_id && !stopping_) {
      // This broker is alive: it runs this. Its heartbeat can wait behind a long burst of
      // work on this thread (thousands of topics created at once); that is no reason to
      // fence it and leave its clients without leaders.
      last_seen_[id] = now;
      continue;
    }
    auto seen = last_seen_.find(id);
    if (seen == last_seen_.end()) {
      last_seen_[id] = now;
      continue;
    }
    const auto silent =
        std::chrono::duration_cast<std::chrono::milliseconds>(now - seen->second).count();
    if (silent <= config_.session_timeout_ms) continue;
    const auto key = std::make_pair(id, b.incarnation());
    if (!fencing.insert(key).second) continue;
    spdlog::warn("controller: broker {} silent for {} ms: fencing it", id, silent);
    pb::Record rec;
    rec.mutable_fence_broker()->set_id(id);
    rec.mutable_fence_broker()->set_incarnation(b.incarnation());
    rec.mutable_fence_broker()->set_fenced(true);
    propose(rec, [key](const ApplyResult&, uint64_t) { fencing.erase(key); });
  }
}

void ClusterNode::serve(int32_t from, pb::ControllerRequest req,
                        std::function<void(pb::ControllerResponse)> reply) {
  if (!voter_ || !group_ || !group_->is_leader() || stopping_) {
    const int32_t hint = leader_.load() == config_.node_id ? -1 : leader_.load();
    reply(error_response(ErrorCode::kNotController, "not the controller leader", hint));
    return;
  }
  (void)from;
  // Every answer carries the index its verdict was judged at (at least the leader's applied
  // index now), so the asking broker answers its client only once its own view is as new:
  // "already exists" is then visible there, like a success.
  lead(std::move(req), [this, reply](pb::ControllerResponse resp) {
    if (resp.applied_index() == 0 &&
        static_cast<ErrorCode>(resp.error_code()) != ErrorCode::kNotController) {
      resp.set_applied_index(state_.image().applied_index());
    }
    reply(std::move(resp));
  });
}

void ClusterNode::lead(pb::ControllerRequest req,
                       std::function<void(pb::ControllerResponse)> reply) {
  // Held: a proposal below may commit and apply at once (a single voter), replacing the
  // state's image while this one is still read.
  const std::shared_ptr<const pb::Image> held = state_.shared();
  const pb::Image& img = *held;
  auto on_applied = [reply](const ApplyResult& a, uint64_t index) {
    reply(from_apply(a, index));
  };
  pb::Record rec;
  switch (req.kind_case()) {
    case pb::ControllerRequest::kRegisterBroker: {
      last_seen_[req.register_broker().id()] = Clock::now();
      const bool joins = !img.brokers().count(req.register_broker().id());
      *rec.mutable_register_broker()->mutable_broker() = req.register_broker();
      propose(rec, [this, reply, joins](const ApplyResult& a, uint64_t index) {
        // A broker that joins the cluster takes its share of replicas (partition.autobalancing).
        if (a.ok() && joins && config_.auto_balance) balance_wanted_ = true;
        reply(from_apply(a, index));
      });
      return;
    }
    case pb::ControllerRequest::kReassign:
      reassign(req.reassign(), std::move(reply));
      return;
    case pb::ControllerRequest::kCompleteReassignment:
      *rec.mutable_complete_reassignment() = req.complete_reassignment();
      propose(rec, [reply, c = req.complete_reassignment()](const ApplyResult& a, uint64_t index) {
        if (a.ok()) {
          spdlog::info("controller: move of {}-{} complete: replicas {}", c.topic(), c.partition(),
                       fmt::join(c.voters(), ","));
        }
        reply(from_apply(a, index));
      });
      return;
    case pb::ControllerRequest::kDecommission:
      decommission(req.decommission(), std::move(reply));
      return;
    case pb::ControllerRequest::kElectPreferred:
      elect_preferred(req.elect_preferred(), std::move(reply));
      return;
    case pb::ControllerRequest::kAlterScramCredentials: {
      // Judged here against the image, per user (cluster/scram.h); the accepted changes are
      // recorded and the refused users answered.
      pb::ControllerResponse refused;
      pb::AlterScramCredentials accepted;
      for (auto& r : scram::check(img, req.alter_scram_credentials(), accepted)) {
        pb::UserResult* u = refused.add_users();
        u->set_user(std::move(r.user));
        u->set_error_code(static_cast<int32_t>(r.code));
        u->set_error_message(std::move(r.message));
      }
      if (accepted.deletions().empty() && accepted.upsertions().empty()) {
        reply(refused);
        return;
      }
      *rec.mutable_alter_scram_credentials() = std::move(accepted);
      propose(rec, [reply, refused](const ApplyResult& a, uint64_t index) {
        pb::ControllerResponse r = from_apply(a, index);
        *r.mutable_users() = refused.users();
        reply(r);
      });
      return;
    }
    case pb::ControllerRequest::kAlterClientQuotas:
      // Each change was checked by the broker that took the request (cluster/quotas.h).
      if (quotas::entities_after(img, req.alter_client_quotas()) > quotas::kEntitiesMax) {
        reply(error_response(ErrorCode::kInvalidRequest,
                             "the cluster would hold more than " +
                                 std::to_string(quotas::kEntitiesMax) +
                                 " client quota entities; remove some first"));
        return;
      }
      if (req.validate_only() || req.alter_client_quotas().changes().empty()) {
        reply(pb::ControllerResponse{});
        return;
      }
      *rec.mutable_alter_client_quotas() = req.alter_client_quotas();
      propose(rec, on_applied);
      return;
    case pb::ControllerRequest::kCreateAcls:
      for (const auto& b : req.create_acls().acls()) {
        if (std::string why = acl::validate(b); !why.empty()) {
          reply(error_response(ErrorCode::kInvalidRequest, why));
          return;
        }
      }
      *rec.mutable_create_acls() = req.create_acls();
      propose(rec, on_applied);
      return;
    case pb::ControllerRequest::kDeleteAcls: {
      // The bindings matching any filter in the image now; the record names them exactly, so
      // the deletion is the same on every broker whatever committed in between.
      for (const auto& f : req.delete_acls().filters()) {
        if (std::string why = acl::validate(f); !why.empty()) {
          reply(error_response(ErrorCode::kInvalidRequest, why));
          return;
        }
      }
      pb::ControllerResponse resp;
      for (const auto& b : img.acls()) {
        for (const auto& f : req.delete_acls().filters()) {
          if (acl::matches(f, b)) {
            *resp.add_acls() = b;
            break;
          }
        }
      }
      if (resp.acls().empty()) {
        reply(resp);
        return;
      }
      *rec.mutable_delete_acls()->mutable_acls() = resp.acls();
      propose(rec, [reply, resp](const ApplyResult& a, uint64_t index) {
        pb::ControllerResponse r = from_apply(a, index);
        if (a.ok()) *r.mutable_acls() = resp.acls();
        reply(r);
      });
      return;
    }
    case pb::ControllerRequest::kBalance: {
      balance_wanted_ = true;
      const auto plan = plan_balance(img, BalanceOptions{config_.placement_epsilon, SIZE_MAX});
      pb::ControllerResponse resp;
      resp.set_moves_started(static_cast<int32_t>(plan.pending));
      resp.set_applied_index(img.applied_index());
      balance_step();
      reply(resp);
      return;
    }
    case pb::ControllerRequest::kHeartbeat: {
      const pb::Heartbeat& h = req.heartbeat();
      pb::ControllerResponse resp;
      auto it = img.brokers().find(h.id());
      if (it == img.brokers().end() || it->second.incarnation() != h.incarnation()) {
        resp.set_unknown_broker(true);
        reply(resp);
        return;
      }
      last_seen_[h.id()] = Clock::now();
      resp.set_term(*group_->term());
      resp.set_fenced(it->second.fenced());
      if (it->second.fenced() && !it->second.shut_down()) {
        spdlog::info("controller: broker {} is back: unfencing it", h.id());
        rec.mutable_fence_broker()->set_id(h.id());
        rec.mutable_fence_broker()->set_incarnation(h.incarnation());
        rec.mutable_fence_broker()->set_fenced(false);
        propose(rec, [](const ApplyResult&, uint64_t) {});
      }
      if (h.applied_index() < img.applied_index()) resp.set_image(img.SerializeAsString());
      reply(resp);
      return;
    }
    case pb::ControllerRequest::kCreateTopic: {
      const pb::TopicRequest& t = req.create_topic();
      if (auto it = img.topics().find(t.name()); it != img.topics().end() &&
                                                !t.request_id().empty() &&
                                                it->second.created_by() == t.request_id()) {
        // A retry of a request whose first attempt created the topic (its answer was lost
        // or late): the same answer.
        pb::ControllerResponse resp = from_apply(ApplyResult{}, img.applied_index());
        *resp.mutable_topic() = it->second;
        reply(resp);
        return;
      }
      auto topic = plan_topic(t);
      if (!topic) {
        reply(from_apply(topic.error(), 0));
        return;
      }
      if (req.validate_only()) {
        pb::ControllerResponse resp;
        *resp.mutable_topic() = *topic;
        reply(resp);
        return;
      }
      const std::string name = topic->name();
      *rec.mutable_create_topic()->mutable_topic() = std::move(*topic);
      propose(rec, [this, reply, name](const ApplyResult& a, uint64_t index) {
        pb::ControllerResponse resp = from_apply(a, index);
        auto it = state_.image().topics().find(name);
        if (a.ok() && it != state_.image().topics().end()) *resp.mutable_topic() = it->second;
        reply(resp);
      });
      return;
    }
    case pb::ControllerRequest::kDeleteTopic:
      if (!img.topics().count(req.delete_topic())) {
        reply(error_response(ErrorCode::kUnknownTopicOrPartition,
                             "topic '" + req.delete_topic() + "' does not exist"));
        return;
      }
      rec.mutable_delete_topic()->set_name(req.delete_topic());
      propose(rec, on_applied);
      return;
    case pb::ControllerRequest::kCreatePartitions: {
      const auto& t = req.create_partitions();
      auto it = img.topics().find(t.name());
      if (it == img.topics().end()) {
        reply(error_response(ErrorCode::kUnknownTopicOrPartition,
                             "topic '" + t.name() + "' does not exist"));
        return;
      }
      auto parts = plan_partitions(it->second, t.partitions(), t.assignments());
      if (!parts) {
        reply(from_apply(parts.error(), 0));
        return;
      }
      if (req.validate_only()) {
        reply(pb::ControllerResponse{});
        return;
      }
      rec.mutable_create_partitions()->set_name(t.name());
      for (auto& p : *parts) *rec.mutable_create_partitions()->add_partitions() = std::move(p);
      propose(rec, on_applied);
      return;
    }
    case pb::ControllerRequest::kSetConfigs: {
      const auto& t = req.set_configs();
      if (!img.topics().count(t.name())) {
        reply(error_response(ErrorCode::kUnknownTopicOrPartition,
                             "topic '" + t.name() + "' does not exist"));
        return;
      }
      rec.mutable_set_topic_configs()->set_name(t.name());
      *rec.mutable_set_topic_configs()->mutable_configs() = t.configs();
      propose(rec, on_applied);
      return;
    }
    case pb::ControllerRequest::kSetBrokerConfigs:
      if (!valid_broker_resource(req.set_broker_configs().broker())) {
        reply(error_response(ErrorCode::kInvalidRequest,
                             "broker resource name '" + req.set_broker_configs().broker() +
                                 "' is neither empty nor a broker id"));
        return;
      }
      if (req.validate_only()) {
        reply(pb::ControllerResponse{});
        return;
      }
      *rec.mutable_set_broker_configs() = req.set_broker_configs();
      propose(rec, on_applied);
      return;
    case pb::ControllerRequest::kAllocateProducerIds:
      rec.mutable_allocate_producer_ids()->set_count(req.allocate_producer_ids());
      propose(rec, [reply](const ApplyResult& a, uint64_t index) {
        pb::ControllerResponse resp = from_apply(a, index);
        resp.set_first_producer_id(a.value);
        reply(resp);
      });
      return;
    case pb::ControllerRequest::kSetLeaders: {
      // Only what changes anything: a report no newer than the image is dropped here.
      auto* out = rec.mutable_set_leaders();
      for (const auto& ch : req.set_leaders().changes()) {
        auto t = img.topics().find(ch.topic());
        if (t == img.topics().end() || ch.partition() < 0 ||
            ch.partition() >= t->second.partitions_size()) {
          continue;
        }
        const pb::Partition& p = t->second.partitions(ch.partition());
        if (ch.leader_epoch() < p.leader_epoch() ||
            (ch.leader_epoch() == p.leader_epoch() && ch.leader() == p.leader() &&
             std::equal(ch.isr().begin(), ch.isr().end(), p.isr().begin(), p.isr().end()))) {
          continue;
        }
        *out->add_changes() = ch;
      }
      if (out->changes().empty()) {
        pb::ControllerResponse resp;
        resp.set_applied_index(img.applied_index());
        reply(resp);
        return;
      }
      propose(rec, on_applied);
      return;
    }
    case pb::ControllerRequest::kShutdownBroker: {
      auto it = img.brokers().find(req.shutdown_broker());
      if (it == img.brokers().end() || it->second.fenced()) {
        reply(pb::ControllerResponse{});
        return;
      }
      spdlog::info("controller: broker {} shuts down: fencing it", req.shutdown_broker());
      rec.mutable_fence_broker()->set_id(req.shutdown_broker());
      rec.mutable_fence_broker()->set_incarnation(it->second.incarnation());
      rec.mutable_fence_broker()->set_fenced(true);
      rec.mutable_fence_broker()->set_shutdown(true);
      propose(rec, on_applied);
      return;
    }
    case pb::ControllerRequest::KIND_NOT_SET:
      break;
  }
  reply(error_response(ErrorCode::kInvalidRequest, "unknown controller request"));
}

namespace {

std::vector<partitioner::Broker> placement_brokers(const pb::Image& img) {
  std::vector<partitioner::Broker> out;
  for (const pb::Broker* b : live_brokers(img)) {
    if (b->decommissioned()) continue;  // being drained: takes no new replicas
    out.push_back(partitioner::Broker{BrokerId(b->id()), b->rack(), 1});
  }
  return out;
}

// Every existing partition as placement input and current assignment, so new replicas go
// where load is lightest.
// The partitions already placed, as loads for the new ones (only the new ones are taken from
// the result). With brokers down, an existing partition counts at most `live` replicas, so a
// topic of a larger replication factor does not stop new topics of a smaller one.
void existing_placement(const pb::Image& img, std::vector<partitioner::PartitionSpec>& specs,
                        partitioner::Assignment& current, int32_t live) {
  for (const auto& [name, t] : img.topics()) {
    for (int i = 0; i < t.partitions_size(); ++i) {
      partitioner::TopicPartition tp{name, PartitionId(i)};
      const auto& p = t.partitions(i);
      specs.push_back({tp, std::clamp(p.replicas_size(), 1, std::max(1, live))});
      partitioner::PartitionAssignment a{tp, {}};
      for (int32_t r : p.replicas()) a.replicas.push_back(BrokerId(r));
      current.push_back(std::move(a));
    }
  }
  std::sort(current.begin(), current.end(),
            [](const auto& a, const auto& b) { return a.tp < b.tp; });
}

// Explicit replica assignments (CreateTopics, CreatePartitions), checked as Kafka's controller
// checks them: every partition lists `rf` distinct registered brokers.
Result<void, ApplyResult> check_assignments(
    const pb::Image& img, const google::protobuf::RepeatedPtrField<pb::Partition>& assignments,
    int32_t rf) {
  auto invalid = [](std::string message) {
    return unexpected(ApplyResult{ErrorCode::kInvalidReplicaAssignment, std::move(message), 0});
  };
  for (const auto& a : assignments) {
    if (a.replicas().empty()) return invalid("a partition's replica assignment is empty");
    std::set<int32_t> seen;
    for (int32_t b : a.replicas()) {
      if (!img.brokers().count(b)) {
        return invalid("assignment names broker " + std::to_string(b) +
                       ", which is not registered");
      }
      if (!seen.insert(b).second) {
        return invalid("assignment names broker " + std::to_string(b) + " twice for one partition");
      }
    }
    if (a.replicas_size() != rf) {
      return invalid("assignment lists " + std::to_string(a.replicas_size()) +
                     " replicas for a partition; the topic's partitions have " +
                     std::to_string(rf));
    }
  }
  return {};
}

}  // namespace

Result<std::vector<pb::Partition>, ApplyResult> ClusterNode::plan_partitions(
    const pb::Topic& topic, int32_t total,
    const google::protobuf::RepeatedPtrField<pb::Partition>& assignments) const {
  const pb::Image& img = state_.image();
  const int32_t have = topic.partitions_size();
  if (total <= have) {
    return unexpected(ApplyResult{ErrorCode::kInvalidPartitions,
                                  "topic '" + topic.name() + "' has " + std::to_string(have) +
                                      " partitions; the new count must be larger",
                                  0});
  }
  const int32_t rf = std::max(1, topic.replication_factor());
  if (!assignments.empty()) {
    // Explicit replicas for the new partitions, as Kafka's CreatePartitions takes them: one
    // per new partition, each with the topic's replication factor.
    if (assignments.size() != total - have) {
      return unexpected(ApplyResult{ErrorCode::kInvalidReplicaAssignment,
                                    "adding " + std::to_string(total - have) +
                                        " partitions to topic '" + topic.name() + "' needs " +
                                        std::to_string(total - have) + " replica assignments; " +
                                        std::to_string(assignments.size()) + " were given",
                                    0});
    }
    if (auto ok = check_assignments(img, assignments, rf); !ok) return unexpected(ok.error());
    std::vector<pb::Partition> out;
    for (const auto& a : assignments) {
      pb::Partition& p = out.emplace_back();
      *p.mutable_replicas() = a.replicas();
      p.set_leader(-1);
    }
    return out;
  }
  auto brokers = placement_brokers(img);
  if (static_cast<int32_t>(brokers.size()) < rf) {
    return unexpected(ApplyResult{ErrorCode::kInvalidReplicationFactor,
                                  "replication factor " + std::to_string(rf) + " needs " +
                                      std::to_string(rf) + " live brokers; " +
                                      std::to_string(brokers.size()) + " are live",
                                  0});
  }
  std::vector<partitioner::PartitionSpec> specs;
  partitioner::Assignment current;
  existing_placement(img, specs, current, static_cast<int32_t>(brokers.size()));
  for (int32_t i = have; i < total; ++i) {
    specs.push_back({partitioner::TopicPartition{topic.name(), PartitionId(i)}, rf});
  }
  partitioner::Options opts;
  opts.epsilon = config_.placement_epsilon;
  auto placed = partitioner::assign(brokers, specs, opts, &current);
  if (!placed) {
    return unexpected(
        ApplyResult{ErrorCode::kInvalidReplicationFactor, placed.error().message, 0});
  }
  std::vector<pb::Partition> out(static_cast<size_t>(total - have));
  for (const auto& a : *placed) {
    if (a.tp.topic != topic.name() || *a.tp.partition < have) continue;
    pb::Partition& p = out[static_cast<size_t>(*a.tp.partition - have)];
    for (BrokerId b : a.replicas) p.add_replicas(*b);
    p.set_leader(-1);
  }
  return out;
}

Result<pb::Topic, ApplyResult> ClusterNode::plan_topic(const pb::TopicRequest& t) const {
  const pb::Image& img = state_.image();
  if (img.topics().count(t.name())) {
    return unexpected(
        ApplyResult{ErrorCode::kTopicAlreadyExists, "topic '" + t.name() + "' already exists", 0});
  }
  pb::Topic topic;
  topic.set_name(t.name());
  topic.set_topic_id(random_id(16));
  topic.set_created_by(t.request_id());
  topic.set_internal(t.internal());
  *topic.mutable_configs() = t.configs();
  int32_t rf = t.replication_factor();
  int32_t partitions = t.partitions();
  if (!t.assignments().empty()) {
    // Explicit replicas: the replication factor is the first partition's (an empty first list
    // fails the checks of plan_partitions as "empty").
    rf = std::max(1, t.assignments(0).replicas_size());
    partitions = t.assignments_size();
  } else {
    if (rf <= 0) rf = config_.default_replication_factor;
    if (rf <= 0) {  // min(3, live brokers), as Redpanda and KRaft-era tools expect
      int32_t live = 0;
      for (const auto& [id, b] : img.brokers()) live += b.fenced() ? 0 : 1;
      rf = std::clamp(live, 1, 3);
    }
    if (partitions <= 0) {
      return unexpected(
          ApplyResult{ErrorCode::kInvalidPartitions, "number of partitions must be at least 1", 0});
    }
  }
  topic.set_replication_factor(rf);
  auto parts = plan_partitions(topic, partitions, t.assignments());
  if (!parts) return unexpected(parts.error());
  for (auto& p : *parts) *topic.add_partitions() = std::move(p);
  return topic;
}

// ---- partition replication ----

void ClusterNode::connect_peers(const pb::Image& image) {
  // Every registered broker may share partitions with this one: dial its inter-broker port.
  for (const auto& [id, b] : image.brokers()) {
    if (id == config_.node_id || !b.has_rpc() || b.rpc().port() == 0) continue;
    std::pair<std::string, uint32_t> addr{b.rpc().host(), b.rpc().port()};
    auto it = peers_.find(id);
    if (it != peers_.end() && it->second == addr) continue;
    peers_[id] = addr;
    transport_->set_peer(id, addr.first, static_cast<uint16_t>(addr.second));
  }
}

void ClusterNode::send_raft(uint64_t group, std::vector<raft::Message> messages) {
  asio::post(io_, [this, group, messages = std::move(messages)] {
    if (stopping_) return;
    transport_->send(group, messages);
  });
}

void ClusterNode::on_peer_call(uint32_t method, PeerHandler handler) {
  SLUICE_ASSERT(method >= kPeerMethodFirst && !thread_.joinable());
  peer_handlers_[method] = std::move(handler);
}

void ClusterNode::call_peer(int32_t peer, uint32_t method, std::string request,
                            std::chrono::milliseconds timeout,
                            std::function<void(Result<std::string>)> done) {
  asio::post(io_, [this, peer, method, timeout, request = std::move(request),
                   done = std::move(done)]() mutable {
    if (stopping_) {
      done(unexpected(Error{static_cast<int>(transport::CallErrc::kClosed), "stopping"}));
      return;
    }
    transport_->call(peer, method, std::move(request), timeout, std::move(done));
  });
}

void ClusterNode::on_partition_message(std::function<void(uint64_t, raft::Message&&)> handler) {
  asio::post(io_, [this, handler = std::move(handler)]() mutable {
    partition_handler_ = std::move(handler);
  });
}

void ClusterNode::on_peer_lost(std::function<void(int32_t)> handler) {
  asio::post(io_, [this, handler = std::move(handler)]() mutable {
    peer_lost_handler_ = std::move(handler);
  });
}

void ClusterNode::report_leaders(const pb::SetLeaders& changes) {
  asio::post(io_, [this, changes] {
    for (const auto& ch : changes.changes()) {
      auto& slot = leader_reports_[{ch.topic(), ch.partition()}];
      if (slot.topic().empty() || ch.leader_epoch() >= slot.leader_epoch()) slot = ch;
    }
    flush_leader_reports();
  });
}

void ClusterNode::flush_leader_reports() {
  if (leader_report_in_flight_ || leader_reports_.empty() || stopping_) return;
  pb::ControllerRequest req;
  auto* sl = req.mutable_set_leaders();
  for (auto& [key, ch] : leader_reports_) *sl->add_changes() = std::move(ch);
  leader_reports_.clear();
  leader_report_in_flight_ = true;
  auto sent = std::make_shared<pb::SetLeaders>(*sl);
  request(std::move(req), std::chrono::milliseconds(5000),
          [this, sent](pb::ControllerResponse resp) {
            leader_report_in_flight_ = false;
            if (resp.error_code() != 0) {
              // Not committed: report again unless a newer report replaced it.
              for (const auto& ch : sent->changes()) {
                auto& slot = leader_reports_[{ch.topic(), ch.partition()}];
                if (slot.topic().empty() || ch.leader_epoch() > slot.leader_epoch()) slot = ch;
              }
              auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(200));
              timer->async_wait([this, timer](boost::system::error_code) { flush_leader_reports(); });
              return;
            }
            flush_leader_reports();
          });
}

// ---- moves and leader elections (cluster.proto: Reassign, Decommission, ElectPreferred) ----

namespace {

pb::PartitionResult partition_result(const std::string& topic, int32_t partition, ErrorCode code,
                                     std::string message) {
  pb::PartitionResult r;
  r.set_topic(topic);
  r.set_partition(partition);
  r.set_error_code(static_cast<int32_t>(code));
  r.set_error_message(std::move(message));
  return r;
}

const pb::Partition* find_partition(const pb::Image& img, const std::string& topic,
                                    int32_t partition) {
  auto it = img.topics().find(topic);
  if (it == img.topics().end() || partition < 0 || partition >= it->second.partitions_size()) {
    return nullptr;
  }
  return &it->second.partitions(partition);
}

}  // namespace

void ClusterNode::reassign(const pb::Reassign& request,
                           std::function<void(pb::ControllerResponse)> reply) {
  const pb::Image& img = state_.image();
  auto resp = std::make_shared<pb::ControllerResponse>();
  pb::Record rec;
  for (const auto& ch : request.changes()) {
    const pb::Partition* p = find_partition(img, ch.topic(), ch.partition());
    auto refuse = [&](ErrorCode code, std::string why) {
      *resp->add_results() = partition_result(ch.topic(), ch.partition(), code, std::move(why));
    };
    if (p == nullptr) {
      refuse(ErrorCode::kUnknownTopicOrPartition, "no such partition");
      continue;
    }
    if (ch.cancel()) {
      if (!moving(*p)) {
        refuse(ErrorCode::kNoReassignmentInProgress, "no move in progress");
        continue;
      }
    } else {
      std::set<int32_t> seen;
      std::string bad;
      for (int32_t b : ch.target()) {
        auto it = img.brokers().find(b);
        if (it == img.brokers().end()) {
          bad = "broker " + std::to_string(b) + " is not registered";
        } else if (it->second.decommissioned()) {
          bad = "broker " + std::to_string(b) + " is being decommissioned";
        } else if (!seen.insert(b).second) {
          bad = "broker " + std::to_string(b) + " is named twice";
        }
        if (!bad.empty()) break;
      }
      if (bad.empty() && seen.empty()) bad = "the target replica list is empty";
      if (!bad.empty()) {
        refuse(ErrorCode::kInvalidReplicaAssignment, bad);
        continue;
      }
    }
    *rec.mutable_reassign()->add_changes() = ch;
    refuse(ErrorCode::kNone, "");
  }
  if (rec.reassign().changes().empty()) {
    resp->set_applied_index(img.applied_index());
    reply(*resp);
    return;
  }
  for (const auto& ch : rec.reassign().changes()) {
    spdlog::info("controller: {} move of {}-{}{}{}", ch.cancel() ? "cancelling the" : "starting a",
                 ch.topic(), ch.partition(), ch.cancel() ? "" : " to replicas ",
                 fmt::join(ch.target(), ","));
  }
  propose(rec, [resp, reply](const ApplyResult& a, uint64_t index) {
    pb::ControllerResponse out = from_apply(a, index);
    *out.mutable_results() = resp->results();
    reply(out);
  });
}

void ClusterNode::decommission(const pb::Decommission& request,
                               std::function<void(pb::ControllerResponse)> reply) {
  const pb::Image& img = state_.image();
  auto it = img.brokers().find(request.id());
  if (it == img.brokers().end()) {
    reply(error_response(ErrorCode::kBrokerNotAvailable,
                         "broker " + std::to_string(request.id()) + " is not registered"));
    return;
  }
  if (request.decommissioned()) {
    // The brokers left must hold every partition's replicas.
    int32_t left = 0;
    for (const auto& [id, b] : img.brokers()) {
      left += (id != request.id() && !b.decommissioned()) ? 1 : 0;
    }
    int32_t rf = 0;
    for (const auto& [name, t] : img.topics()) {
      for (const auto& p : t.partitions()) {
        rf = std::max(rf, static_cast<int32_t>(target_replicas(p).size()));
      }
    }
    if (left < rf) {
      reply(error_response(ErrorCode::kInvalidRequest,
                           "decommissioning broker " + std::to_string(request.id()) + " would leave " +
                               std::to_string(left) + " broker(s) for partitions of " +
                               std::to_string(rf) + " replicas; add a broker first"));
      return;
    }
  }
  pb::Record rec;
  *rec.mutable_decommission() = request;
  spdlog::info("controller: {} broker {}",
               request.decommissioned() ? "decommissioning" : "recommissioning", request.id());
  propose(rec, [this, reply](const ApplyResult& a, uint64_t index) {
    if (a.ok()) balance_wanted_ = true;
    reply(from_apply(a, index));
  });
}

void ClusterNode::elect_preferred(const pb::ElectPreferred& request,
                                  std::function<void(pb::ControllerResponse)> reply) {
  const pb::Image& img = state_.image();
  auto resp = std::make_shared<pb::ControllerResponse>();
  pb::Record rec;
  for (const auto& t : request.partitions()) {
    const pb::Partition* p = find_partition(img, t.topic(), t.partition());
    ErrorCode code = ErrorCode::kNone;
    std::string why;
    if (p == nullptr || p->replicas_size() == 0) {
      code = ErrorCode::kUnknownTopicOrPartition;
      why = "no such partition";
    } else if (leader_of(img, *p) == p->replicas(0)) {
      code = ErrorCode::kElectionNotNeeded;
      why = "the preferred replica leads";
    } else if (auto b = img.brokers().find(p->replicas(0));
               b == img.brokers().end() || b->second.fenced()) {
      code = ErrorCode::kPreferredLeaderNotAvailable;
      why = "the preferred replica (broker " + std::to_string(p->replicas(0)) + ") is not live";
    } else {
      *rec.mutable_elect_preferred()->add_partitions() = t;
    }
    *resp->add_results() = partition_result(t.topic(), t.partition(), code, why);
  }
  if (rec.elect_preferred().partitions().empty()) {
    resp->set_applied_index(img.applied_index());
    reply(*resp);
    return;
  }
  propose(rec, [resp, reply](const ApplyResult& a, uint64_t index) {
    pb::ControllerResponse out = from_apply(a, index);
    *out.mutable_results() = resp->results();
    reply(out);
  });
}

void ClusterNode::balance_step() {
  if (!group_ || !group_->is_leader() || balance_in_flight_) return;
  const pb::Image& img = state_.image();
  // A balance cut short by a failover resumes: decommissioned brokers holding replicas are
  // checked every time; an underloaded broker (a node_add balance) during the new leader's
  // first seconds, when its image has caught up with its log. A move someone asked for
  // (AlterPartitionReassignments) is not a reason to balance: that would undo it.
  const bool fresh = Clock::now() < resume_check_until_;
  if (!balance_wanted_ && needs_balance(img, config_.auto_balance && fresh)) balance_wanted_ = true;
  if (!balance_wanted_) return;
  size_t moving_now = 0;
  for (const auto& [name, t] : img.topics()) {
    for (const auto& p : t.partitions()) moving_now += moving(p) ? 1 : 0;
  }
  BalanceOptions o;
  o.epsilon = config_.placement_epsilon;
  o.max_moves = config_.max_concurrent_moves > moving_now
                    ? config_.max_concurrent_moves - moving_now
                    : 0;
  const BalancePlan plan = plan_balance(img, o);
  if (plan.pending == 0 && moving_now == 0) {
    balance_wanted_ = false;
    if (balance_moved_) spdlog::info("controller: replicas are balanced");
    balance_moved_ = false;
    return;
  }
  if (plan.moves.empty()) return;
  pb::Record rec;
  for (const auto& m : plan.moves) {
    auto* ch = rec.mutable_reassign()->add_changes();
    ch->set_topic(m.topic);
    ch->set_partition(m.partition);
    for (int32_t b : m.target) ch->add_target(b);
  }
  spdlog::info("controller: balancer starts {} move(s); {} partition(s) to move, {} moving",
               plan.moves.size(), plan.pending, moving_now);
  balance_in_flight_ = true;
  balance_moved_ = true;
  propose(rec, [this](const ApplyResult&, uint64_t) { balance_in_flight_ = false; });
}

}  // namespace sluice::cluster
