// sluice transaction list | describe | producers: the transactions of a cluster through Kafka's
// ListTransactions, DescribeTransactions and DescribeProducers (KIP-664), as
// kafka-transactions.sh shows them.
#include <chrono>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "cli/cli.h"
#include "common/json.h"
#include "protocol/error_codes.h"

namespace sluice::cli {

namespace {

using client::kAnyBroker;

constexpr const char* kTxnTopic = "__transaction_state";

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A coordinator error worth asking again for (it moves, or is loading its log).
bool coordinator_moving(int16_t code) {
  using kafka::ErrorCode;
  const auto e = static_cast<ErrorCode>(code);
  return e == ErrorCode::kNotCoordinator || e == ErrorCode::kCoordinatorLoadInProgress ||
         e == ErrorCode::kCoordinatorNotAvailable;
}

// Whether the cluster has a transaction log (no transactional producer ever ran otherwise).
Result<bool> has_txn_log(Context& ctx) {
  auto md = ctx.admin().metadata({}, true, true);
  if (!md) return unexpected(md.error());
  return (*md)->topic(kTxnTopic) != nullptr;
}

struct ListOptions {
  std::vector<std::string> states;
  std::vector<int64_t> producer_ids;
  int64_t min_duration_ms = -1;
  std::string format = "text";
};

void txn_list(Context& ctx, const ListOptions& o) {
  const std::string what = "transaction list";
  auto md = ctx.admin().metadata({}, true, true);
  if (!md) return fail(ctx, what, md.error());
  kafka::ListTransactionsRequest req;
  req.state_filters = o.states;
  req.producer_id_filters = o.producer_ids;
  req.duration_filter = o.min_duration_ms;
  if (o.min_duration_ms >= 0) {  // DurationFilter needs v1 on every broker
    for (const auto& b : (*md)->brokers) {
      auto v = ctx.admin().api_version(b.node_id, kafka::ApiKey::kListTransactions);
      if (!v) return fail(ctx, what, v.error());
      if (*v < 1) {
        return fail(ctx, what,
                    Error{1, "broker " + std::to_string(b.node_id) +
                                 " cannot filter by duration (ListTransactions v1)"});
      }
    }
  }
  struct Row {
    std::string id;
    int32_t coordinator;
    int64_t producer_id;
    std::string state;
  };
  std::map<std::string, Row> rows;
  std::vector<std::string> unknown;
  // A broker that does not answer leaves its transactions out: the others are listed, and
  // its error is reported after them (exit status 1), so an operator sees what can be seen.
  struct Silent {
    int32_t node;
    Error error;
    bool answered;  // it answered with an error (else it did not answer at all)
  };
  std::vector<Silent> silent;
  for (const auto& b : (*md)->brokers) {
    Result<kafka::ListTransactionsResponse> r = unexpected(Error{1, "not asked"});
    for (int attempt = 0; attempt < 20; ++attempt) {  // a coordinator loading: about 10 s
      r = ctx.admin().call_as<kafka::ListTransactionsResponse>(b.node_id, req);
      if (!r || !coordinator_moving(r->error_code)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    if (!r) {
      silent.push_back({b.node_id, r.error(), false});
      continue;
    }
    if (r->error_code != 0) {
      silent.push_back({b.node_id, client::kafka_error(r->error_code, "ListTransactions"), true});
      continue;
    }
    if (unknown.empty()) unknown = r->unknown_state_filters;
    for (const auto& t : r->transaction_states) {
      rows[t.transactional_id] = {t.transactional_id, b.node_id, t.producer_id,
                                  t.transaction_state};
    }
  }
  if (!unknown.empty()) {
    std::string names;
    for (const auto& u : unknown) names += (names.empty() ? "" : ", ") + u;
    return usage_error(ctx, "unknown transaction state(s): " + names +
                                " (Empty, Ongoing, PrepareCommit, PrepareAbort, CompleteCommit, "
                                "CompleteAbort, Dead, PrepareEpochFence)");
  }
  if (o.format == "json") {
    JsonWriter w;
    w.begin_array();
    for (const auto& [id, r] : rows) {
      w.begin_object().field("transactional_id", id).field("coordinator", r.coordinator);
      w.field("producer_id", r.producer_id).field("state", r.state).end_object();
    }
    std::cout << w.end_array().take() << "\n";
  } else {
    for (const auto& [id, r] : rows) {
      std::cout << id << " coordinator " << r.coordinator << " producer_id " << r.producer_id
                << " state " << r.state << "\n";
    }
  }
  std::cout.flush();
  for (const Silent& s : silent) {
    fail(ctx,
         what + " (broker " + std::to_string(s.node) +
             (s.answered ? " refused" : " did not answer") +
             "; the transactions it coordinates are not listed)",
         s.error);
  }
}

// The coordinator of a transactional id, asked again while it moves.
Result<int32_t> txn_coordinator(Context& ctx, const std::string& id) {
  kafka::FindCoordinatorRequest req;
  req.key = id;
  req.key_type = 1;
  for (int attempt = 0;; ++attempt) {
    auto r = ctx.admin().call_as<kafka::FindCoordinatorResponse>(kAnyBroker, req);
    if (!r) return unexpected(r.error());
    if (r->error_code == 0) {
      (void)ctx.admin().metadata({}, true);  // the coordinator's address
      return r->node_id;
    }
    if (!coordinator_moving(r->error_code) || attempt >= 20) {
      return unexpected(client::kafka_error(r->error_code, "FindCoordinator " + id));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

void txn_describe(Context& ctx, const std::string& id, const std::string& format) {
  const std::string what = "transaction describe " + id;
  auto exists = has_txn_log(ctx);
  if (!exists) return fail(ctx, what, exists.error());
  // Asking for a coordinator creates the transaction log: not for a look.
  const Error not_found{
      static_cast<int>(kafka::ErrorCode::kTransactionalIdNotFound),
      "transactional id '" + id + "' is not known (list them with `sluice transaction list`)"};
  if (!*exists) return fail(ctx, what, not_found);
  kafka::DescribeTransactionsResponse::TransactionState found;
  int32_t coordinator = -1;
  for (int attempt = 0;; ++attempt) {
    auto coord = txn_coordinator(ctx, id);
    if (!coord) return fail(ctx, what, coord.error());
    coordinator = *coord;
    kafka::DescribeTransactionsRequest req;
    req.transactional_ids = {id};
    auto r = ctx.admin().call_as<kafka::DescribeTransactionsResponse>(coordinator, req);
    if (!r) return fail(ctx, what, r.error());
    if (r->transaction_states.size() != 1) {
      return fail(ctx, what, Error{1, "the broker answered for no transactional id"});
    }
    found = r->transaction_states[0];
    if (!coordinator_moving(found.error_code) || attempt >= 20) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  if (found.error_code == static_cast<int16_t>(kafka::ErrorCode::kTransactionalIdNotFound)) {
    return fail(ctx, what, not_found);
  }
  if (found.error_code != 0) {
    return fail(ctx, what, client::kafka_error(found.error_code, "DescribeTransactions"));
  }
  const int64_t duration =
      found.transaction_start_time_ms >= 0 ? now_ms() - found.transaction_start_time_ms : -1;
  if (format == "json") {
    JsonWriter w;
    w.begin_object().field("transactional_id", found.transactional_id);
    w.field("coordinator", coordinator).field("producer_id", found.producer_id);
    w.field("producer_epoch", found.producer_epoch).field("state", found.transaction_state);
    w.field("timeout_ms", found.transaction_timeout_ms);
    if (found.transaction_start_time_ms >= 0) {
      w.field("start_time_ms", found.transaction_start_time_ms).field("duration_ms", duration);
    } else {
      w.key("start_time_ms").null().key("duration_ms").null();
    }
    w.key("partitions").begin_array();
    for (const auto& t : found.topics) {
      for (int32_t p : t.partitions) {
        w.begin_object().field("topic", t.topic).field("partition", p).end_object();
      }
    }
    std::cout << w.end_array().end_object().take() << "\n";
    return;
  }
  std::cout << "transactional_id " << found.transactional_id << "\n"
            << "coordinator " << coordinator << "\n"
            << "producer_id " << found.producer_id << "\n"
            << "producer_epoch " << found.producer_epoch << "\n"
            << "state " << found.transaction_state << "\n"
            << "timeout_ms " << found.transaction_timeout_ms << "\n";
  if (found.transaction_start_time_ms >= 0) {
    std::cout << "start_time_ms " << found.transaction_start_time_ms << "\n"
              << "duration_ms " << duration << "\n";
  }
  std::cout << "partitions";
  if (found.topics.empty()) std::cout << " -";
  for (const auto& t : found.topics) {
    for (int32_t p : t.partitions) std::cout << " " << t.topic << "-" << p;
  }
  std::cout << "\n";
}

struct ProducersOptions {
  std::string topic;
  std::vector<int32_t> partitions;
  std::string format = "text";
};

void txn_producers(Context& ctx, const ProducersOptions& o) {
  const std::string what = "transaction producers " + o.topic;
  auto md = ctx.admin().metadata({o.topic}, true);
  if (!md) return fail(ctx, what, md.error());
  const client::TopicInfo* t = (*md)->topic(o.topic);
  if (!t || t->error_code != 0) {
    return fail(ctx, what, client::kafka_error(t ? t->error_code : int16_t{3}, "topic " + o.topic));
  }
  std::vector<int32_t> wanted = o.partitions;
  if (wanted.empty()) {
    for (const auto& p : t->partitions) wanted.push_back(p.partition);
  }
  std::map<int32_t, kafka::DescribeProducersRequest> by_leader;
  for (int32_t p : wanted) {
    if (p < 0 || p >= static_cast<int32_t>(t->partitions.size())) {
      return usage_error(ctx, "topic '" + o.topic + "' has no partition " + std::to_string(p) +
                                  " (it has " + std::to_string(t->partitions.size()) + ")");
    }
    auto& req = by_leader[t->partitions[static_cast<size_t>(p)].leader];
    if (req.topics.empty()) req.topics.emplace_back().name = o.topic;
    req.topics[0].partition_indexes.push_back(p);
  }
  std::map<int32_t, kafka::DescribeProducersResponse::PartitionResponse> found;
  for (auto& [leader, req] : by_leader) {
    if (leader < 0) {
      return fail(ctx, what, client::kafka_error(5, "a partition of " + o.topic));
    }
    auto r = ctx.admin().call_as<kafka::DescribeProducersResponse>(leader, req);
    if (!r) return fail(ctx, what, r.error());
    for (const auto& rt : r->topics) {
      for (const auto& rp : rt.partitions) found[rp.partition_index] = rp;
    }
  }
  for (const auto& [p, rp] : found) {
    if (rp.error_code != 0) {
      return fail(ctx, what + "-" + std::to_string(p),
                  client::kafka_error(rp.error_code, "DescribeProducers"));
    }
  }
  if (o.format == "json") {
    JsonWriter w;
    w.begin_array();
    for (const auto& [p, rp] : found) {
      for (const auto& s : rp.active_producers) {
        w.begin_object().field("partition", p).field("producer_id", s.producer_id);
        w.field("producer_epoch", s.producer_epoch).field("last_sequence", s.last_sequence);
        w.field("last_timestamp", s.last_timestamp);
        w.field("coordinator_epoch", s.coordinator_epoch);
        if (s.current_txn_start_offset >= 0) {
          w.field("txn_start_offset", s.current_txn_start_offset);
        } else {
          w.key("txn_start_offset").null();
        }
        w.end_object();
      }
    }
    std::cout << w.end_array().take() << "\n";
    return;
  }
  for (const auto& [p, rp] : found) {
    for (const auto& s : rp.active_producers) {
      std::cout << o.topic << "-" << p << " producer_id " << s.producer_id << " epoch "
                << s.producer_epoch << " last_sequence " << s.last_sequence << " last_timestamp "
                << s.last_timestamp << " coordinator_epoch " << s.coordinator_epoch
                << " txn_start_offset "
                << (s.current_txn_start_offset >= 0 ? std::to_string(s.current_txn_start_offset)
                                                    : std::string("-"))
                << "\n";
    }
  }
}

}  // namespace

void register_transaction(CLI::App& app, Context& ctx) {
  auto* txn = app.add_subcommand(
      "transaction", "Inspect transactional producers and their transactions (KIP-664)");
  txn->require_subcommand(1);

  auto l = std::make_shared<ListOptions>();
  auto* list = txn->add_subcommand(
      "list", "Transactional ids, each with its coordinator, producer id and state");
  list->add_option("--state", l->states,
                   "Only ids in this state: Empty, Ongoing, PrepareCommit, PrepareAbort, "
                   "CompleteCommit, CompleteAbort (repeatable)");
  list->add_option("--producer-id", l->producer_ids, "Only this producer id (repeatable)");
  list->add_option("--min-duration-ms", l->min_duration_ms,
                   "Only transactions open at least this long")
      ->check(CLI::NonNegativeNumber);
  add_format_option(*list, l->format);
  list->callback([&ctx, l] { txn_list(ctx, *l); });

  auto id = std::make_shared<std::string>();
  auto dformat = std::make_shared<std::string>("text");
  auto* describe = txn->add_subcommand(
      "describe", "A transactional id's producer, state, timeout and open partitions");
  describe->add_option("transactional-id", *id, "Transactional id")->required();
  add_format_option(*describe, *dformat);
  describe->callback([&ctx, id, dformat] { txn_describe(ctx, *id, *dformat); });

  auto p = std::make_shared<ProducersOptions>();
  auto* producers = txn->add_subcommand(
      "producers",
      "The producers a topic's partition leaders keep state for, with the first offset of each "
      "one's open transaction");
  producers->add_option("topic", p->topic, "Topic")->required();
  producers->add_option("-p,--partition", p->partitions, "Only these partitions (repeatable)");
  add_format_option(*producers, p->format);
  producers->callback([&ctx, p] { txn_producers(ctx, *p); });
}

}  // namespace sluice::cli
