// This broker's part in the cluster: the controller quorum (Raft group 0) when this broker is
// one of its voters, and for every broker the metadata image, registration, heartbeats and the
// requests it forwards to the controller leader (topic changes, producer ids).
//
// Threads: a ClusterNode runs on its own thread and io_context, with the inter-broker
// transport. The controller persists its Raft log with blocking fsyncs (rare, small records):
// on its own thread they never stall a shard. Everything public is callable from any thread;
// callbacks run on the cluster thread.
//
// Metadata: voters apply committed records to their image as Raft commits them; other brokers
// (observers) receive the leader's image in heartbeat answers whenever theirs is older, and at
// once when a request they forwarded needs a newer one. Either way the broker sees images
// in order, each whole.
//
// One code path: with no voters configured, the broker is the single voter of its own
// controller quorum, so zero-config sluiced runs the same controller as a cluster.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "cluster/cluster.pb.h"
#include "cluster/metadata.h"
#include "common/result.h"
#include "replication/driver/raft_group.h"
#include "replication/driver/raft_storage.h"
#include "replication/transport/transport.h"

namespace sluice::cluster {

struct Voter {
  int32_t id = -1;
  std::string host;
  uint16_t port = 0;
};
// "0@host:9093,1@host:9093": KRaft's controller.quorum.voters.
Result<std::vector<Voter>> parse_voters(const std::string& text);

struct ClusterConfig {
  int32_t node_id = 0;
  std::string data_dir;  // controller state in <data_dir>/controller
  std::string rack;
  std::string kafka_host;
  uint16_t kafka_port = 0;
  std::vector<std::pair<std::string, Voter>> kafka_listeners;  // name -> advertised host:port
  std::string rpc_listen_host = "127.0.0.1";
  uint16_t rpc_listen_port = 9093;
  std::string rpc_advertised_host;  // empty: the listen address
  uint16_t rpc_advertised_port = 0;
  // Non-null: TLS on the inter-broker listener and connections (security.inter.broker.protocol
  // =SSL; replication/transport/tls.h make_peer_tls_context). Null: plain TCP.
  std::shared_ptr<boost::asio::ssl::context> rpc_tls;
  std::vector<Voter> voters;        // empty: this broker alone
  std::string cluster_id;           // the id a new cluster takes (empty: random)
  int64_t session_timeout_ms = 9000;
  int64_t heartbeat_interval_ms = 500;
  int64_t tick_ms = 50;
  uint32_t election_ticks = 10;
  int32_t default_replication_factor = -1;  // -1: min(3, live brokers)
  double placement_epsilon = 0.05;
  uint64_t snapshot_every = 1000;  // controller log entries between snapshots
  bool auto_balance = true;         // a broker that joins gets its share of replicas
  size_t max_concurrent_moves = 16;  // partitions moving at once (balancer)
  int64_t balance_interval_ms = 1000;
};

// What a topic change asks for; the controller validates it against its image.
struct TopicChange {
  std::string name;
  int32_t partitions = -1;
  int32_t replication_factor = -1;
  std::map<std::string, std::string> configs;
  std::vector<std::vector<int32_t>> assignments;
  bool internal = false;
};

// The controller quorum as this broker knows it (DescribeQuorum, `sluice cluster info`).
struct QuorumStatus {
  int32_t leader = -1;
  uint64_t term = 0;
  uint64_t commit = 0;  // the leader's commit index; others: their own
  struct Replica {
    int32_t id = -1;
    int64_t log_end = -1;  // the leader's view of the replica's log; -1 when unknown
  };
  std::vector<Replica> voters;
  std::vector<Replica> observers;  // registered brokers that are not voters
};

class ClusterNode {
 public:
  explicit ClusterNode(ClusterConfig config);
  ~ClusterNode();

  // Starts the thread, the transport and (on voters) the controller; registration follows.
  Status start();
  // Blocks until this broker is registered and its image shows it, or the timeout passes.
  Status wait_ready(std::chrono::milliseconds timeout);
  // Controlled shutdown: asks the controller to fence this broker, then stops everything.
  void stop();

  std::shared_ptr<const pb::Image> image() const;
  // Called on the cluster thread with each new image, in order.
  void on_image(std::function<void(std::shared_ptr<const pb::Image>)> callback);

  using Done = std::function<void(pb::ControllerResponse)>;
  // Sends a request to the controller leader (retrying elsewhere on NOT_CONTROLLER or a lost
  // connection until `timeout`); `done` runs on the cluster thread once this broker's own image
  // includes the change (or with the error).
  void request(pb::ControllerRequest req, std::chrono::milliseconds timeout, Done done);

  // Partition replication (Raft groups other than 0). Messages go out through the transport
  // (any thread); messages for partition groups arrive on `handler` (cluster thread).
  void send_raft(uint64_t group, std::vector<raft::Message> messages);
  void on_partition_message(std::function<void(uint64_t group, raft::Message&&)> handler);
  // The connection to a peer broker failed (Transport::on_peer_lost): runs on the cluster
  // thread.
  void on_peer_lost(std::function<void(int32_t peer)> handler);
  // Leaders report (topic, partition, leader, epoch) to the controller, which commits them
  // (stale epochs are ignored) so that every broker's Metadata names the current leader.
  // Reports are merged and sent at most one request at a time. Any thread.
  void report_leaders(const pb::SetLeaders& changes);

  // Calls between brokers outside the controller (transport methods from kPeerMethodFirst;
  // the controller has method 1). `handler` serves `method`; register before start(). It
  // runs on the cluster thread and may call `reply` later from any thread, at most once.
  static constexpr uint32_t kPeerMethodFirst = 2;
  using PeerReply = std::function<void(std::string response)>;
  using PeerHandler = std::function<void(int32_t from, std::string request, PeerReply reply)>;
  void on_peer_call(uint32_t method, PeerHandler handler);
  // Calls `method` on broker `peer` (any thread); `done` runs once on the cluster thread,
  // with the response or the transport's error (unknown peer, not connected, timeout).
  void call_peer(int32_t peer, uint32_t method, std::string request,
                 std::chrono::milliseconds timeout, std::function<void(Result<std::string>)> done);

  QuorumStatus quorum_status() const;
  int32_t node_id() const { return config_.node_id; }
  bool is_voter() const { return voter_; }
  int32_t controller_leader() const { return leader_.load(); }
  uint64_t controller_term() const { return term_.load(); }
  uint16_t rpc_port() const { return rpc_port_.load(); }
  // The inter-broker transport's counters, as of the cluster thread's last tick. Any thread.
  struct TransportCounters {
    uint64_t bytes_in = 0, bytes_out = 0, file_bytes_out = 0, frames_in = 0, frames_out = 0;
    uint64_t dropped = 0;
  };
  TransportCounters transport_counters() const {
    return {.bytes_in = rpc_bytes_in_.load(std::memory_order_relaxed),
            .bytes_out = rpc_bytes_out_.load(std::memory_order_relaxed),
            .file_bytes_out = rpc_file_bytes_out_.load(std::memory_order_relaxed),
            .frames_in = rpc_frames_in_.load(std::memory_order_relaxed),
            .frames_out = rpc_frames_out_.load(std::memory_order_relaxed),
            .dropped = rpc_dropped_.load(std::memory_order_relaxed)};
  }
  // Certificate reload: inter-broker connections made from now on use `tls`, open ones keep
  // theirs. Any thread; only with rpc_tls set at start.
  void set_rpc_tls(std::shared_ptr<boost::asio::ssl::context> tls);

 private:
  struct Pending {
    uint64_t term = 0;
    std::function<void(const ApplyResult&, uint64_t index)> done;
  };
  struct Outstanding;

  // Cluster thread.
  void tick();
  void heartbeat();
  void register_self();
  void publish(std::shared_ptr<const pb::Image> image);
  void send_request(std::shared_ptr<Outstanding> op);
  // Runs fn(true) once this broker's image includes `index`, or fn(false) at the deadline.
  void after_applied(uint64_t index, std::chrono::steady_clock::time_point deadline,
                     std::function<void(bool)> fn);
  // Controller (voters).
  Status start_controller();
  void apply_entry(const raft::Entry& entry);
  // After a Ready's entries were applied: the image is published once, then the proposals
  // they decided are answered.
  void entries_applied();
  void on_raft_change();
  void serve(int32_t from, pb::ControllerRequest req, std::function<void(pb::ControllerResponse)>);
  void lead(pb::ControllerRequest req, std::function<void(pb::ControllerResponse)> reply);
  void propose(const pb::Record& record,
               std::function<void(const ApplyResult&, uint64_t index)> done);
  void check_sessions();
  // Moves (reassignments), decommissioning, preferred leader elections, the balancer.
  void reassign(const pb::Reassign& request, std::function<void(pb::ControllerResponse)> reply);
  void decommission(const pb::Decommission& request,
                    std::function<void(pb::ControllerResponse)> reply);
  void elect_preferred(const pb::ElectPreferred& request,
                       std::function<void(pb::ControllerResponse)> reply);
  void balance_step();
  bool balance_wanted_ = false;
  bool balance_in_flight_ = false;
  bool balance_moved_ = false;  // this balance started moves (say when it is done)
  std::chrono::steady_clock::time_point resume_check_until_{};
  std::chrono::steady_clock::time_point next_balance_{};
  Result<pb::Topic, ApplyResult> plan_topic(const pb::TopicRequest& t) const;
  // The replicas of partitions [partitions, total) of `topic`: `assignments` when given
  // (checked), placed by consistent hashing otherwise.
  Result<std::vector<pb::Partition>, ApplyResult> plan_partitions(
      const pb::Topic& topic, int32_t total,
      const google::protobuf::RepeatedPtrField<pb::Partition>& assignments) const;

  ClusterConfig config_;
  bool voter_ = false;
  uint64_t incarnation_ = 0;
  boost::asio::io_context io_{1};
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
  std::thread thread_;
  std::unique_ptr<transport::Transport> transport_;
  std::unique_ptr<boost::asio::steady_timer> ticker_;
  std::unique_ptr<raft::FileRaftStorage> storage_;
  std::unique_ptr<raft::RaftGroup> group_;
  MetadataState state_;  // voters: applied from the Raft log
  std::map<uint64_t, Pending> pending_;  // leader: proposals by log index
  struct Applied {
    uint64_t index = 0;
    uint64_t term = 0;
    ApplyResult result;
  };
  std::vector<Applied> applied_;  // since the last entries_applied()
  bool answering_ = false;        // entries_applied() is answering proposals
  bool process_posted_ = false;   // propose() posted the group's process()
  std::map<int32_t, std::chrono::steady_clock::time_point> last_seen_;  // leader: heartbeats
  struct Waiter {
    std::chrono::steady_clock::time_point deadline;
    std::function<void(bool)> fn;
  };
  std::multimap<uint64_t, Waiter> waiting_;  // by applied index
  std::vector<std::function<void(std::shared_ptr<const pb::Image>)>> listeners_;
  std::chrono::steady_clock::time_point next_heartbeat_{};
  std::chrono::steady_clock::time_point next_register_{};
  bool registered_ = false;
  bool heartbeat_in_flight_ = false;
  bool stopping_ = false;
  bool shutting_down_ = false;  // controlled shutdown asked: no more heartbeats
  size_t voter_cursor_ = 0;

  void flush_leader_reports();
  void connect_peers(const pb::Image& image);
  std::function<void(uint64_t, raft::Message&&)> partition_handler_;
  std::function<void(int32_t)> peer_lost_handler_;
  std::map<uint32_t, PeerHandler> peer_handlers_;  // set before start(), read on the cluster thread
  std::map<std::pair<std::string, int32_t>, pb::SetLeaders::Change> leader_reports_;
  bool leader_report_in_flight_ = false;
  std::map<int32_t, std::pair<std::string, uint32_t>> peers_;  // rpc addresses set

  void refresh_status();
  mutable std::mutex status_mutex_;  // guards status_ (read by shards)
  QuorumStatus status_;
  mutable std::mutex image_mutex_;  // guards image_ (read by shards)
  std::shared_ptr<const pb::Image> image_;
  std::atomic<int32_t> leader_{-1};
  std::atomic<uint64_t> term_{0};
  std::atomic<uint16_t> rpc_port_{0};
  std::atomic<uint64_t> rpc_bytes_in_{0}, rpc_bytes_out_{0}, rpc_file_bytes_out_{0};
  std::atomic<uint64_t> rpc_frames_in_{0}, rpc_frames_out_{0}, rpc_dropped_{0};
  std::atomic<bool> ready_{false};
};

}  // namespace sluice::cluster
