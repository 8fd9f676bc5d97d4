// The broker: shards, their io_uring rings and partitions, the topic registry, the listener,
// and the Kafka request handlers of a single node.
//
// Threads: one Shard per core (config.shards). Each partition belongs to exactly one shard
// (shard_of()), whose thread alone touches its log, producer state and fetch waiters; a
// request that needs a partition on another shard posts a task there and the result comes
// back through the connection's completion (which posts to the connection's shard). Handlers
// that span partitions fan out and gather results into per-partition slots, so no slot is
// written by two threads; the last task to finish encodes the response.
#pragma once

#include <array>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include "broker/admin_server.h"
#include "broker/cleaner.h"
#include "broker/config.h"
#include "broker/connection.h"
#include "broker/data_dir.h"
#include "broker/dynamic_config.h"
#include "broker/group_coordinator.h"
#include "broker/metrics.h"
#include "broker/producer_state.h"
#include "broker/quota_manager.h"
#include "broker/replica.h"
#include "broker/security.h"
#include "broker/server.h"
#include "broker/shard.h"
#include "broker/sync_pacer.h"
#include "broker/topic_registry.h"
#include "broker/txn_coordinator.h"
#include "broker/txn_file.h"
#include "cluster/acl.h"
#include "cluster/cluster_node.h"
#include "log/compaction.h"
#include "log/log.h"
#include "protocol/message_frame.h"

namespace sluice::broker {

struct TopicPartition {
  std::string topic;
  int32_t partition = 0;
  auto operator<=>(const TopicPartition&) const = default;
};

// A fetch parked on a partition until new data arrives. The token is owned by the fetch; an
// expired token means the fetch already answered, and the waiter is dropped.
struct FetchWaiter {
  std::weak_ptr<void> token;
  int64_t wake_above = 0;  // fire once the high watermark is above this offset
  std::function<void()> wake;
};

struct Partition {
  TopicPartition tp;
  std::unique_ptr<log::PartitionLog> log;
  std::unique_ptr<Replica> replica;  // the partition's Raft group on this broker
  uint64_t group = 0;                // its group id (partition_group_id)
  int32_t reported_leader = -2;      // the last (leader, epoch) reported to the controller
  int32_t reported_epoch = -1;
  std::vector<int32_t> reported_isr;
  ProducerStateTable producers;
  // Its transactions kept across restarts (txn_file.h): what start-up found, then the writer
  // (made at the first save).
  std::optional<TxnFileContents> txn_file_entries;
  std::shared_ptr<TxnFile> txn_file;
  std::vector<FetchWaiter> waiters;
  bool deleting = false;
  bool log_append_time = false;  // message.timestamp.type=LogAppendTime
  int64_t min_insync_replicas = 1;
  bool flush_every_batch = true;
  log::LogConfig log_config;  // what it was opened with (reopened with after a full disk)
  // Compaction (broker_groups.cc): the pass the cleaner thread runs for this partition (0: none)
  // and its cancel flag; the high watermark when a pass last found nothing new.
  uint64_t cleaning_pass = 0;
  std::shared_ptr<std::atomic<bool>> cleaning_cancel;
  int64_t compaction_checked_end = -1;
  // Moves and leader balancing (reassign.cc), on the partition's leader.
  std::chrono::steady_clock::time_point move_reported{};  // CompleteReassignment last sent
  std::chrono::steady_clock::time_point prefer_since{};   // preferred replica ready since
  std::vector<int32_t> learners;  // the group's learners (moving in), as the leader last saw
  int32_t seen_term = -1;               // the last Raft term counted for /metrics
  bool awake = false;                   // in its shard's `awake` list (ticked)
  // Damage found in a closed segment (recovery or the scrubber): the first offset this replica
  // cannot serve, until it is repaired from the other replicas (repair_damaged_partitions).
  int64_t damaged_from = -1;
  uint32_t repair_ticks = 0;
  uint32_t reopen_waits = 0;  // looks at it, stopped on a full disk, while its log was busy

  // What consumers may read: the commit index (Raft), as a Kafka offset.
  int64_t high_watermark() const {
    if (replica) return replica->high_watermark();
    return *(flush_every_batch ? log->durable_offset() : log->written_offset());
  }
  // Whether this replica may serve Produce and Fetch: the Raft leader, once it committed an
  // entry of its own term (its high watermark is current).
  bool serving() const { return !replica || replica->serving(); }
};

// Everything one shard owns. Touched only on that shard's thread.
struct ShardState {
  explicit ShardState(uint32_t id) : shard(id) {}
  Shard shard;
  std::unique_ptr<log::IoRing> ring;
  std::unique_ptr<log::FdCache> fds;
  std::unique_ptr<boost::asio::posix::stream_descriptor> ring_events;
  std::array<std::byte, 8> ring_counter{};  // watch_ring() reads the eventfd's counter here
  std::unique_ptr<boost::asio::steady_timer> ticker;
  std::unique_ptr<boost::asio::steady_timer> group_timer;  // GroupCoordinator deadlines
  std::unique_ptr<boost::asio::steady_timer> raft_ticker;  // Raft ticks of every replica
  std::shared_ptr<SyncPacer> pacer;  // the replicas' persists of new proposals (null: unpaced)
  uint64_t raft_ticks = 0;
  std::map<TopicPartition, std::unique_ptr<Partition>> partitions;
  std::unordered_map<uint64_t, Partition*> by_group;  // Raft group id -> partition
  // The Raft groups the raft ticker visits: every replica but those put to sleep while idle
  // (Replica::sleep); a replica that something reaches again rejoins (ReplicaEvents::on_wake).
  // Group ids, looked up in by_group, so a deleted partition is simply not found.
  std::vector<uint64_t> awake;
  TopicPartition scrub_cursor;  // the scrubber's round-robin position
  bool damage_noted = false;    // some partition here may have damage to repair
  // reopen_full_partitions: log stops it has looked for, and whether stopped logs were left.
  uint64_t log_stops_seen = 0;
  bool full_logs_left = false;
  // drive_moves: the metadata version it last went over every partition for, and when.
  uint64_t moves_seen_version = UINT64_MAX;
  uint64_t moves_full_tick = 0;
  // wake_silenced: the peers it last found silent, and when it last went over the partitions.
  std::vector<int32_t> silent_peers;
  uint64_t silent_pass_tick = 0;
  ShardMetrics metrics;         // this shard's counters for /metrics (broker/metrics.h)

  Partition* find(const TopicPartition& tp) {
    auto it = partitions.find(tp);
    return it == partitions.end() || it->second->deleting ? nullptr : it->second.get();
  }
};

struct FetchOp;
struct PartitionState;
struct ShardReport;

// Refuses to start (a message saying what to do) when partition directories exist but this
// broker, a controller voter, has no controller state (and no single-node metadata.bin to
// migrate), unless config.rebuild_metadata. Before anything is written.
Status check_metadata_present(const BrokerConfig& config);

class Broker {
 public:
  static Result<std::unique_ptr<Broker>> create(const BrokerConfig& config);
  ~Broker();

  // Opens every partition (recovery), binds the listener and starts serving.
  Status start();
  // Clean shutdown: stop accepting, answer what is in flight, flush and close every log.
  void stop();
  uint16_t port() const { return server_ ? server_->port() : 0; }
  // SIGHUP: TLS listeners read their certificate, key and CA files again.
  void reload_tls();
  uint16_t admin_port() const { return admin_ ? admin_->port() : 0; }
  cluster::ClusterNode* cluster() { return cluster_.get(); }
  const BrokerConfig& config() const { return config_; }
  // sluiced --verify: recovers every partition with every batch's CRC checked, logs what it
  // finds, and returns the exit status (0: no damage, 1: damage). Instead of start().
  int verify();

 private:
  friend struct FetchOp;
  using Done = std::function<void(Reply)>;
  struct Request {
    ConnectionInfo conn;
    RequestFrame frame;
    kafka::RequestHeader header;
    Done done;
    // Set by a handler before it answers when some partition failed (for /metrics' error
    // count); read by the completion `done` wraps, on the same thread.
    bool errored = false;
    // The shard(s) of the partitions the request names (Reply::affinity), set by the data
    // path's handlers before their work fans out; copied into the reply by `done`.
    int32_t affinity = Reply::kNoShard;
  };

  explicit Broker(const BrokerConfig& config) : config_(config) {}
  // Descriptors: the open-files limit is raised to its hard limit; kDescriptorsReserved of it
  // go to connections, rings, the controller and the like; the shards share the rest equally.
  // A shard's FdCache takes half of its share at most for read-only handles of closed
  // segments; the rest is for holders (a partition's log holds at most 5: its active segment's
  // three files, its directory and partition.meta; its replica 2: raft.state and
  // raft.internal, so 7 for the two holders of a partition). Idle partitions hold none beyond
  // the idle cap; busy ones wait for room under the busy cap (log::FdCache), so the number of
  // partitions is bounded by max.partitions only.
  static constexpr int64_t kDescriptorsReserved = 4096;
  static constexpr int64_t kDescriptorsPerPartitionBusy = 7;
  static constexpr int64_t kDescriptorsPerHolder = 5;
  struct DescriptorPlan {
    int64_t open_files = 0;
    size_t cache_per_shard = 1024;   // read-only handles (FdCache capacity)
    size_t holders_per_shard = 256;  // idle holders keeping descriptors (FdCache holders_max)
    size_t busy_per_shard = 1024;    // holders keeping descriptors at all (FdCache busy_max)
  };
  static DescriptorPlan plan_descriptors(size_t shards);

  // Shards and partitions.
  ShardState& shard_of(const TopicPartition& tp);
  void start_shard(ShardState& ss);
  void watch_ring(ShardState& ss);
  void tick_shard(ShardState& ss);
  // Raft: ticks every replica of the shard, reports leadership changes to the controller and
  // moves group coordination with the __consumer_offsets leaders.
  void tick_raft(ShardState& ss);
  // Moves (reassign.cc): on each partition this shard leads, changes the Raft group's
  // membership one server at a time towards the move's target (learner, then voter, then the
  // old replica removed), reports the finished move to the controller, and hands leadership
  // to the preferred replica when asked (ElectLeaders) or when leader balancing is on.
  void drive_moves(ShardState& ss, const TopicsSnapshot& snap);
  void drive_move(Partition& p, const PartitionInfo& info);
  void prefer_leader(Partition& p, const PartitionInfo& info, const TopicsSnapshot& snap);
  // Closes one partition this broker no longer hosts (a finished move took it away) and
  // removes its files (renamed to a tombstone first, as for a deleted topic).
  void delete_local_partition(const TopicPartition& tp, const std::array<uint8_t, 16>& id);
  // --replica.move.throttle.bytes: drops the catch-up appends to learners that would pass the
  // budget (Raft sends them again from where the learner is); refilled on shard 0's tick.
  void throttle_moves(Partition& p, std::vector<raft::Message>& messages);
  std::atomic<int64_t> move_tokens_{0};
  // On tp's shard: closes the partition (once its log is idle), renames its directory to its
  // tombstone, then runs `then` (on that shard).
  void close_and_tombstone(const TopicPartition& tp, const std::array<uint8_t, 16>& id,
                           std::function<void()> then);
  // A Raft message from a peer (cluster thread): to the shard of its partition.
  void route_raft(uint64_t group, raft::Message&& message);
  void park_vote(uint64_t group, raft::Message&& message);  // under groups_mutex_
  void deliver_parked_votes(ShardState& ss, uint64_t group);
  // The Raft side of a partition whose log is open (created with `voters` if new).
  std::unique_ptr<Replica> open_replica(ShardState& ss, Partition& p, uint64_t group,
                                        std::vector<int32_t> voters, Status& status);
  log::LogConfig log_config_for(const TopicInfo& topic) const;
  // Opens (creating if needed) every partition of `topic` in [first, last) on its shard and
  // calls `done` with the first error, if any, once all are open.
  void open_partitions(const TopicInfo& topic, int32_t first, int32_t last,
                       std::function<void(Status)> done);
  // Storage housekeeping (broker_storage.cc). At start: tombstones, orphans, lost metadata.
  Status reconcile_data_dir();
  // Removes the local partitions of a topic the controller deleted (or that was deleted and
  // created again under the same name): each is closed on its shard and its directory renamed
  // to a tombstone, durably, and the tombstones are removed in the background. A crash midway
  // leaves tombstones or unowned directories, which the next start removes or sets aside:
  // the deleted topic's data is never served again.
  void delete_local_partitions(const TopicInfo& topic);
  // --rebuild-metadata: topics for partition directories no topic owns, through the controller.
  Status rebuild_topics_from_dirs();
  // Runs `then` on the shard once `p`'s log has nothing in flight (woken by the log's last
  // completion). For a partition being deleted.
  static void when_idle(ShardState& ss, Partition* p, std::function<void()> then);
  // Free space of the data volume against config_.min_free_bytes (on shard 0's tick).
  void check_free_space();
  // Partitions stopped by a full disk are reopened (recovery cuts what was not written)
  // once there is room again.
  void reopen_full_partitions(ShardState& ss);
  // Called on every shard tick (100 ms): a scrubber step; free space and reopening less often.
  void storage_tick(ShardState& ss, int ticks);
  // A bounded step of the background CRC check of closed segments.
  void scrub_partitions(ShardState& ss);
  // Notes damage a recovery or scrub issue reports; repairs replicated partitions that have
  // some (broker_storage.cc).
  static void note_damage(ShardState& ss, Partition& p, const log::RecoveryIssue& issue);
  void repair_damaged_partitions(ShardState& ss);
  // Pushes a topic's settings in force (its own over the broker defaults) to its open
  // partitions: timestamps, min.insync.replicas, segment size and age, retention.
  void apply_topic_settings(const TopicInfo& topic);
  void rebuild_producer_state(Partition& p);
  // Saves what the partition's transactions' file lacks (txn_file.h), on its shard.
  void save_transactions(ShardState& ss, Partition& p);
  static void notify_waiters(Partition& p);
  // Creates a topic through the controller; `done` runs on any thread once this broker's
  // metadata has it and its local partitions are being opened.
  void create_topic(cluster::TopicChange change,
                    std::function<void(Result<TopicInfo, TopicError>)> done);
  // Runs `done` (on shard 0) once every partition of `name` has a reported leader, or at the
  // deadline.
  void when_leaders(const std::string& name, std::chrono::steady_clock::time_point deadline,
                    std::function<void()> done);
  // Start-up: blocks until the partitions whose only voter is this broker serve and the
  // metadata names their leader and epoch, or until the deadline.
  void wait_for_own_leaders(std::chrono::steady_clock::time_point deadline);
  // Controlled shutdown: transfers the leadership of every partition led here that has other
  // voters, and waits (bounded) until none is led here.
  void hand_off_leadership(std::chrono::steady_clock::time_point deadline);
  // Opens the partitions this broker hosts and closes those it no longer does, for a new
  // metadata view (any thread; serialised by reconcile_mutex_). `done` once the opens finished.
  void reconcile(std::shared_ptr<const TopicsSnapshot> snap, std::function<void(Status)> done);
  bool hosts(const TopicInfo& topic, int32_t partition) const;
  // The error for a partition this broker does not have open: KAFKA_STORAGE_ERROR when it is
  // this broker's but offline, NOT_LEADER_OR_FOLLOWER when the cluster has it elsewhere,
  // UNKNOWN_TOPIC_OR_PARTITION when nobody does.
  kafka::ErrorCode missing_partition_error(const TopicPartition& tp) const;
  // A single-node data directory from before the controller: its topics become records.
  Status migrate_legacy_metadata();

  // Requests.
  void handle(const ConnectionInfo& conn, RequestFrame frame, Done done);
  void dispatch(std::shared_ptr<Request> req, kafka::RequestBody body);
  template <class Body>
  static void respond(const Request& req, const Body& body,
                      std::vector<std::shared_ptr<const void>> keep = {}) {
    OutFrame out{kafka::encode_response(req.header.correlation_id, req.header.api_version, body),
                 std::move(keep)};
    req.done(Reply{Reply::Kind::kFrame, std::move(out)});
  }

  void handle_api_versions(std::shared_ptr<Request> req, const kafka::ApiVersionsRequest& body);
  // Client quotas (quotas_api.cc): KIP-546's DescribeClientQuotas and AlterClientQuotas; what
  // enforces them is quotas_ (broker/quota_manager.h).
  void handle_describe_client_quotas(std::shared_ptr<Request> req,
                                     const kafka::DescribeClientQuotasRequest& body);
  void handle_alter_client_quotas(std::shared_ptr<Request> req,
                                  const kafka::AlterClientQuotasRequest& body);
  // The client's user for quotas: its principal's name ("ANONYMOUS" without authentication).
  static std::string quota_user(const Request& req);
  // Records a Produce request against the client's producer_byte_rate, on the connection's
  // shard before the request's work starts; sets its session's throttle (the connection reads
  // nothing more until then) and returns the throttle time to answer.
  int32_t record_produce(const Request& req);
  // What QuotaManager::record answered (-1: no quota), into the client's session (on the
  // connection's shard): held to a quota, and throttled until when. Returns the throttle time.
  static int32_t note_throttle(const Request& req, bool any_quota, int32_t recorded);
  // KIP-599: the partitions a CreateTopics, CreatePartitions or DeleteTopics request creates or
  // deletes, topic by topic, against the client's controller_mutation_rate (on the
  // connection's shard). take() is false when the quota refuses the topic (strict versions:
  // THROTTLING_QUOTA_EXCEEDED); refund() gives back a taken topic's partitions when its change
  // failed; finish() returns the throttle time to answer and sets the session's.
  class MutationQuota {
   public:
    MutationQuota(Broker& broker, const Request& req, bool strict)
        : broker_(broker), req_(req), strict_(strict) {}
    bool take(int32_t partitions);
    std::function<void()> refund(int32_t partitions) const;
    int32_t finish();

   private:
    Broker& broker_;
    const Request& req_;
    bool strict_;
    bool limited_ = false;  // the client has a controller_mutation_rate
    int32_t throttle_ms_ = 0;
  };
  // Security (broker/security.cc): one Server per listener; SASL before anything else.
  Status start_listeners(const std::vector<Shard*>& shards);
  static const std::string& listener_name(const ConnectionInfo& conn);  // "" without one
  kafka::FindCoordinatorResponse on_listener(const Request& req,
                                             kafka::FindCoordinatorResponse resp);
  // True when the request was answered here: a SASL request, or one refused before
  // authentication (the connection is closed).
  bool handle_security(const ConnectionInfo& conn, const kafka::RequestHeader& header,
                       kafka::RequestBody& body, Done& done);
  bool handle_raw_sasl(const ConnectionInfo& conn, const RequestFrame& frame, Done& done);
  struct SaslStep {
    std::string reply;
    std::string failure;  // empty: this step succeeded
    bool finished = false;
  };
  SaslStep sasl_step(const ConnectionInfo& conn, Session& session, std::string_view message,
                     const std::string& client_id);
  void reply_after_failure(const ConnectionInfo& conn, Reply reply, Done done);
  void handle_metadata(std::shared_ptr<Request> req, const kafka::MetadataRequest& body);
  void handle_create_topics(std::shared_ptr<Request> req, const kafka::CreateTopicsRequest& body);
  void handle_describe_quorum(std::shared_ptr<Request> req,
                              const kafka::DescribeQuorumRequest& body);
  void handle_describe_cluster(std::shared_ptr<Request> req,
                               const kafka::DescribeClusterRequest& body);
  void handle_delete_topics(std::shared_ptr<Request> req, const kafka::DeleteTopicsRequest& body);
  void handle_create_partitions(std::shared_ptr<Request> req,
                                const kafka::CreatePartitionsRequest& body);
  void handle_describe_configs(std::shared_ptr<Request> req,
                               const kafka::DescribeConfigsRequest& body);
  void handle_alter_configs(std::shared_ptr<Request> req, const kafka::AlterConfigsRequest& body);
  void handle_incremental_alter_configs(std::shared_ptr<Request> req,
                                        const kafka::IncrementalAlterConfigsRequest& body);
  void handle_produce(std::shared_ptr<Request> req, kafka::ProduceRequest body);
  void handle_fetch(std::shared_ptr<Request> req, kafka::FetchRequest body);
  void handle_list_offsets(std::shared_ptr<Request> req, const kafka::ListOffsetsRequest& body);
  void handle_write_txn_markers(std::shared_ptr<Request> req,
                                const kafka::WriteTxnMarkersRequest& body);
  // The markers of `body` written by this broker's leaders (`may`: the sender is allowed
  // CLUSTER_ACTION); `done` once each partition has answered, on any thread.
  void write_txn_markers(std::shared_ptr<const kafka::WriteTxnMarkersRequest> body, bool may,
                         std::function<void(const kafka::WriteTxnMarkersResponse&)> done);
  // What the coordinators of an internal topic (groups: __consumer_offsets; transactions:
  // __transaction_state) ask of the broker for its partitions (broker_groups.cc): the owning
  // shard, posting there, the serving leader's log, appends through Raft (recorded in the
  // producers' table) and what follows an append.
  struct InternalTopicOps {
    std::function<uint32_t(int32_t partition)> shard_of;
    std::function<void(uint32_t shard, std::function<void()>)> post;
    std::function<log::PartitionLog*(int32_t partition)> log_of;
    std::function<kafka::ErrorCode(int32_t partition, MutableBytes batch,
                                   std::function<void(kafka::ErrorCode)> done)>
        replicate;
    std::function<void(int32_t partition)> after_append;
  };
  InternalTopicOps internal_topic_ops(const std::string& topic);
  // Transactions (broker/broker_txn.cc, txn_coordinator.h).
  Status start_transactions();
  bool ensure_txn_topic();  // true once __transaction_state exists; else asks for it once
  void handle_find_txn_coordinator(std::shared_ptr<Request> req,
                                   const kafka::FindCoordinatorRequest& body);
  void handle_init_txn_producer_id(std::shared_ptr<Request> req,
                                   const kafka::InitProducerIdRequest& body);
  void handle_add_partitions_to_txn(std::shared_ptr<Request> req,
                                    const kafka::AddPartitionsToTxnRequest& body);
  void handle_add_offsets_to_txn(std::shared_ptr<Request> req,
                                 const kafka::AddOffsetsToTxnRequest& body);
  void handle_end_txn(std::shared_ptr<Request> req, const kafka::EndTxnRequest& body);
  // KIP-664's views: the transactions this broker coordinates, one id's state, and the
  // producers a partition's leader knows.
  void handle_list_transactions(std::shared_ptr<Request> req,
                                const kafka::ListTransactionsRequest& body);
  void handle_describe_transactions(std::shared_ptr<Request> req,
                                    const kafka::DescribeTransactionsRequest& body);
  void handle_describe_producers(std::shared_ptr<Request> req,
                                 const kafka::DescribeProducersRequest& body);
  void send_txn_markers(kafka::WriteTxnMarkersRequest request,
                        std::function<void(std::vector<TxnMarkerResult>)> done);
  // Serves kTxnMarkersMethod: a WriteTxnMarkers request frame from a peer's coordinator.
  void serve_txn_markers(std::string request, std::function<void(std::string)> reply);
  void handle_delete_records(std::shared_ptr<Request> req,
                             const kafka::DeleteRecordsRequest& body);
  template <class Response, class Topics, class Work>
  void per_partition(std::shared_ptr<Request> req, const Topics& topics, cluster::acl::Operation op,
                     Work work);
  void handle_init_producer_id(std::shared_ptr<Request> req,
                               const kafka::InitProducerIdRequest& body);
  void handle_offset_for_leader_epoch(std::shared_ptr<Request> req,
                                      const kafka::OffsetForLeaderEpochRequest& body);
  Result<int64_t, TopicError> next_producer_id();
  // Moves, leader elections and log directories (reassign_api.cc).
  void handle_alter_partition_reassignments(std::shared_ptr<Request> req,
                                            const kafka::AlterPartitionReassignmentsRequest& body);
  void handle_list_partition_reassignments(std::shared_ptr<Request> req,
                                           const kafka::ListPartitionReassignmentsRequest& body);
  void handle_elect_leaders(std::shared_ptr<Request> req, const kafka::ElectLeadersRequest& body);
  void handle_describe_log_dirs(std::shared_ptr<Request> req,
                                const kafka::DescribeLogDirsRequest& body);
  // Consumer groups (group_coordinator.h): the coordinator answers, possibly later. With the
  // authorizer, what the principal may not touch is taken out of the request first and
  // answered with GROUP_/TOPIC_AUTHORIZATION_FAILED (broker/acl_api.cc).
  template <class Body>
  void handle_group(std::shared_ptr<Request> req, const Body& original) {
    Body body = original;
    auto denied = authorize_group(*req, body);
    if (!denied) return;  // refused whole, answered
    const std::string& peer = req->conn.peer;
    GroupRequestContext ctx{req->header.api_version, req->header.client_id,
                            "/" + peer.substr(0, peer.rfind(':'))};
    groups_->handle(ctx, body, [this, req, denied = std::move(*denied)](const auto& r) {
      auto resp = r;
      add_denied(*req, denied, resp);
      if constexpr (std::is_same_v<std::decay_t<decltype(resp)>, kafka::FindCoordinatorResponse>) {
        respond(*req, on_listener(*req, resp));  // the coordinator on the client's listener
      } else {
        respond(*req, resp);
      }
    });
  }
  // ACLs (broker/acl_api.cc; cluster/acl.h): the authorizer for the current metadata image.
  struct GroupDenied {
    std::vector<std::pair<std::string, std::vector<int32_t>>> topics;  // TOPIC_AUTHORIZATION_FAILED
    std::vector<std::string> groups;  // GROUP_AUTHORIZATION_FAILED (DescribeGroups, DeleteGroups)
    bool filter = false;  // drop what the principal may not DESCRIBE (ListGroups, OffsetFetch all)
  };
  std::shared_ptr<const cluster::acl::Authorizer> authorizer() const;
  void set_acls(const cluster::pb::Image& image);
  bool allowed(const Request& req, cluster::acl::Operation op, cluster::acl::ResourceType type,
               std::string_view name) const;
  bool allowed(const Request& req, const cluster::acl::Authorizer& authz,
               cluster::acl::Operation op, cluster::acl::ResourceType type,
               std::string_view name) const;
  // Answers the request (refused whole) and returns nullopt, or returns what to add back.
  template <class Body>
  std::optional<GroupDenied> authorize_group(const Request& req, Body& body);
  template <class Resp>
  void add_denied(const Request& req, const GroupDenied& denied, Resp& resp);
  // SCRAM credentials in the cluster metadata (broker/users_api.cc, cluster/scram.h).
  void handle_describe_user_scram_credentials(
      std::shared_ptr<Request> req, const kafka::DescribeUserScramCredentialsRequest& body);
  void handle_alter_user_scram_credentials(std::shared_ptr<Request> req,
                                           const kafka::AlterUserScramCredentialsRequest& body);
  void handle_describe_acls(std::shared_ptr<Request> req, const kafka::DescribeAclsRequest& body);
  void handle_create_acls(std::shared_ptr<Request> req, const kafka::CreateAclsRequest& body);
  void handle_delete_acls(std::shared_ptr<Request> req, const kafka::DeleteAclsRequest& body);
  // The cluster-wide check of an API that needs one (CLUSTER ALTER/DESCRIBE/...): answers
  // CLUSTER_AUTHORIZATION_FAILED and returns false when refused.
  bool authorize_request(const std::shared_ptr<Request>& req, const kafka::RequestBody& body);
  // 0, or the error for a settings resource (topic: TOPIC_, broker: CLUSTER_AUTHORIZATION_FAILED).
  int16_t config_denied(const Request& req, int8_t resource_type, const std::string& name,
                        bool alter) const;
  // An alter's resource: authorized, a known topic, or the BROKER "" or this broker's id
  // (Kafka routes "<id>" to that broker). False with `out`'s error set otherwise.
  template <class Out>
  bool check_config_resource(const Request& req, int8_t type, const std::string& name, Out& out);
  // CREATE on the cluster or on the topic (CreateTopics, Metadata auto-creation).
  bool may_create_topic(const Request& req, const std::string& topic) const {
    return allowed(req, cluster::acl::Operation::kCreate, cluster::acl::ResourceType::kCluster,
                   cluster::acl::kClusterName) ||
           allowed(req, cluster::acl::Operation::kCreate, cluster::acl::ResourceType::kTopic,
                   topic);
  }
  // Dynamic broker configs (dynamic_config.h, dynamic_config.cc in requests.cc): the settings
  // in force, config_ with the metadata's dynamic values over it. Any thread.
  std::shared_ptr<const BrokerConfig> live_config() const;
  // A new metadata image: recomputes the settings in force; when they changed, stores them and
  // applies them (connection limits, the topic defaults of open partitions).
  void apply_dynamic_config(const cluster::pb::Image& image);
  ConfigMap dynamic_configs(const cluster::pb::Image& image, const std::string& resource) const;
  mutable std::mutex live_mutex_;
  std::shared_ptr<const BrokerConfig> live_;
  uint64_t live_index_ = 0;  // the image applied_index live_ was built from
  RuntimeLimits limits_;  // read by the listeners, connections and replication
  mutable std::mutex authorizer_mutex_;
  std::shared_ptr<const cluster::acl::Authorizer> authorizer_;
  uint64_t authorizer_index_ = 0;  // the image applied_index authorizer_ was built from
  Status start_groups();
  // A bounded compaction step on the shard's partitions with cleanup.policy compact.
  void compact_partitions(ShardState& ss);
  void run_cleaning_pass(ShardState& ss, const TopicPartition& tp, uint64_t pass, int64_t hw,
                         uint64_t history, const std::vector<log::ClosedSegment>& closed,
                         int64_t dirty_from, const log::CompactionOptions& options,
                         const std::atomic<bool>& cancel);

  // Admin HTTP API and /metrics (admin.cc). Handlers run on shard 0.
  Status start_admin();
  void stop_admin();
  void handle_admin(const AdminRequest& req, std::function<void(AdminResponse)> done);
  // Decommission, recommission, balance and the moves in progress (admin_moves.cc): true
  // when `target` is one of those (and `done` was called).
  bool handle_admin_moves(const AdminRequest& req, std::string_view target,
                          std::function<void(AdminResponse)>& done);
  AdminResponse decommission_status(int32_t broker);
  AdminResponse admin_health();
  AdminResponse admin_config();
  AdminResponse admin_brokers();
  AdminResponse admin_topics();
  void admin_topic(const std::string& name, std::function<void(AdminResponse)> done);
  void admin_metrics(std::function<void(AdminResponse)> done);
  std::string write_metrics(const std::vector<ShardReport>& reports);
  void write_partition_metrics(PromWriter& w, const std::vector<ShardReport>& reports);
  void write_group_metrics(PromWriter& w, const std::vector<ShardReport>& reports);
  void admin_groups(std::function<void(AdminResponse)> done);
  // Cumulative traffic per topic and group lag, for pollers (the console's charts, sluice top).
  void admin_stats(std::function<void(AdminResponse)> done);
  // What a scrape, /v1/stats and /v1/groups take from one shard (on its thread).
  // gather<ShardReport>, then the high watermarks of partitions that groups coordinated here
  // committed but no replica here holds, from their leaders (peer method kOffsetsMethod).
  void gather_reports(std::function<void(ShardState&, ShardReport&)> fill,
                      std::function<void(std::vector<ShardReport>)> done);
  // Serves kOffsetsMethod: the offsets of the asked partitions this broker holds.
  void serve_offsets(std::string request, std::function<void(std::string)> reply);
  static constexpr uint32_t kOffsetsMethod = cluster::ClusterNode::kPeerMethodFirst;
  static constexpr uint32_t kTxnMarkersMethod = cluster::ClusterNode::kPeerMethodFirst + 1;
  static constexpr int kOffsetsPartitionsMax = 100000;
  static constexpr std::chrono::milliseconds kPeerCallTimeout{1000};
  void fill_report(ShardState& ss, ShardReport& r, int64_t lag_ms,
                   const std::shared_ptr<const TopicsSnapshot>& snap);
  // The web console (admin_console.cc): its files, and the last records of a partition.
  AdminResponse admin_console_file(std::string_view path);
  void admin_records(const std::string& topic, int32_t partition, int32_t limit,
                     std::function<void(AdminResponse)> done);
  // Runs `fill` on every shard with that shard's slot, then `done` with all slots (on the
  // shard that finished last). Never blocks.
  template <class Slot>
  void gather(std::function<void(ShardState&, Slot&)> fill,
              std::function<void(std::vector<Slot>)> done);
  // A request's outcome into the metrics of the shard running this (or, from another thread,
  // of the connection's shard).
  void count_request(uint32_t conn_shard, int16_t api_key, int16_t version, bool error,
                     std::chrono::steady_clock::time_point start);

  BrokerConfig config_;
  QuotaManager quotas_{config_.quota_window_num, config_.quota_window_size_seconds};
  std::unique_ptr<DataDirLock> lock_;  // held from create() to destruction
  std::unique_ptr<cluster::ClusterNode> cluster_;
  std::unique_ptr<TopicRegistry> registry_;
  struct Hosted {
    std::array<uint8_t, 16> id{};
    int32_t partitions = 0;
    std::map<std::string, std::string> configs;
    std::set<int32_t> local;  // the partitions this broker hosts (as of the last reconcile)
  };
  std::mutex groups_mutex_;  // guards group_index_, parked_votes_ and peer_heard_ms_
  std::unordered_map<uint64_t, TopicPartition> group_index_;
  // Vote requests for groups not open here yet (a new partition's preferred replica campaigns
  // as soon as its own broker applies the topic, often before the other replicas' brokers
  // do): kept a short while and delivered when the group opens, so that the first election
  // succeeds instead of waiting out an election timeout. Bounded (route_raft).
  struct ParkedVote {
    int64_t at_ms = 0;
    raft::Message message;
  };
  std::unordered_map<uint64_t, std::vector<ParkedVote>> parked_votes_;
  size_t parked_count_ = 0;
  int64_t parked_swept_ms_ = 0;
  // Brokers' liveness for quiesced groups: when a Raft message (any group's, or a ping) from
  // each peer last arrived (steady clock, ms). Pings go out every heartbeat interval.
  std::unordered_map<int32_t, int64_t> peer_heard_ms_;
  void ping_peers(const TopicsSnapshot& snap);
  void wake_silenced(ShardState& ss);
  std::mutex reconcile_mutex_;  // guards hosted_
  std::map<std::string, Hosted> hosted_;
  std::atomic<bool> reconciling_{false};  // new metadata views open/close partitions
  std::vector<std::unique_ptr<ShardState>> shards_;
  std::unique_ptr<Server> server_;  // the first listener (config_.listeners[0])
  std::vector<std::unique_ptr<Server>> more_servers_;  // the others (broker/security.cc)
  std::unique_ptr<Security> security_;                 // credentials, SASL (broker/security.h)
  std::unique_ptr<GroupCoordinator> groups_;
  // Compaction passes off the shards (broker_groups.cc); stopped before the logs close.
  std::unique_ptr<LogCleaner> cleaner_;
  std::atomic<uint64_t> cleaning_passes_{0};
  std::atomic<bool> groups_ready_{false};  // set once groups_ is loaded; shard tickers read it
  std::unique_ptr<TxnCoordinator> txns_;
  std::atomic<bool> txns_ready_{false};           // set once txns_ exists
  std::atomic<bool> txn_topic_requested_{false};  // __transaction_state asked for
  std::mutex producer_ids_mutex_;          // guards the block below (InitProducerId, rare)
  int64_t producer_id_next_ = 0;
  int64_t producer_id_end_ = 0;
  // Below the free-space threshold: produce is refused (read by every Produce, written by
  // shard 0's tick).
  std::atomic<bool> low_space_{false};
  // Free space is above the threshold with a margin: partitions a full disk stopped reopen.
  std::atomic<bool> room_again_{false};
  // Corrupt batches the scrubber found (for /metrics, which does not exist yet).
  std::atomic<uint64_t> scrub_damage_found_{0};
  bool stopped_ = false;
  // For /v1/health: starting (recovery) until start() is done, stopping from stop().
  enum class Phase : uint8_t { kStarting, kServing, kStopping };
  std::atomic<Phase> phase_{Phase::kStarting};
  // cluster_ and registry_ exist and the cluster is ready (the admin API on shard 0 reads them).
  std::atomic<bool> cluster_up_{false};
  std::chrono::steady_clock::time_point started_at_;  // written before phase_ is kServing
  std::unique_ptr<AdminServer> admin_;
  // Set when stop() begins: parked fetches answer at once instead of holding up the drain.
  std::atomic<bool> stopping_{false};
};

}  // namespace sluice::broker
