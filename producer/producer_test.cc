// Producer and consumer against a real sluiced (label integration).
#include "producer/producer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <boost/property_tree/json_parser.hpp>
#include <boost/property_tree/ptree.hpp>
#include <cstdlib>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "client/client.h"
#include "client/testing/broker_process.h"
#include "consumer/consumer.h"
#include "partitioner/key_partitioner.h"
#include "protocol/error_codes.h"

namespace sluice {
namespace {

using client::testing::BrokerProcess;
using client::testing::sluiced_path;

void create_topic(const std::string& address, const std::string& topic, int32_t partitions) {
  client::ClientConfig cc;
  cc.bootstrap_servers = {address};
  client::Client c(cc);
  kafka::CreateTopicsRequest req;
  kafka::CreateTopicsRequest::CreatableTopic t;
  t.name = topic;
  t.num_partitions = partitions;
  t.replication_factor = 1;
  req.topics.push_back(t);
  auto r = c.call_as<kafka::CreateTopicsResponse>(client::kAnyBroker, req);
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->topics.at(0).error_code, 0);
}

std::unique_ptr<Producer> make_producer(const std::string& address, ProducerConfig config = {}) {
  config.bootstrap_servers = address;
  auto p = Producer::create(config);
  EXPECT_TRUE(p) << p.error().message;
  return p ? std::move(*p) : nullptr;
}

std::unique_ptr<Consumer> make_consumer(const std::string& address, ConsumerConfig config = {}) {
  config.bootstrap_servers = address;
  auto c = Consumer::create(config);
  EXPECT_TRUE(c) << c.error().message;
  return c ? std::move(*c) : nullptr;
}

// Reads everything of `topic` from the beginning until `expected` records arrived (or 30 s
// without progress).
// The group's committed offset of `tp` once it is `want` (a transaction's offsets commit with
// its markers, just after the commit's answer), or what it is after about 10 s (-1: none).
int64_t committed_soon(Consumer& group, const TopicPartition& tp, int64_t want) {
  int64_t offset = -1;
  for (int i = 0; i < 100 && offset != want; ++i) {
    auto got = group.committed({tp});
    if (got) {
      auto it = got->find(tp);
      offset = it == got->end() ? -1 : it->second;
    }
    if (offset != want) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return offset;
}

std::vector<ConsumerRecord> read_all(const std::string& address, const std::string& topic,
                                     int32_t partitions, size_t expected) {
  auto c = make_consumer(address);
  std::vector<TopicPartition> tps;
  for (int32_t p = 0; p < partitions; ++p) tps.push_back({topic, p});
  EXPECT_TRUE(c->assign(tps));
  EXPECT_TRUE(c->seek_to_beginning(tps));
  std::vector<ConsumerRecord> out;
  auto last = std::chrono::steady_clock::now();
  while (out.size() < expected &&
         std::chrono::steady_clock::now() - last < std::chrono::seconds(30)) {
    auto r = c->poll(std::chrono::milliseconds(200));
    EXPECT_TRUE(r) << r.error().message;
    if (!r) break;
    if (!r->empty()) last = std::chrono::steady_clock::now();
    for (auto& rec : *r) out.push_back(std::move(rec));
  }
  return out;
}

class ClientIntegration : public ::testing::Test {
 protected:
  // Auto-creation off, so unknown topics stay unknown (the default broker creates them).
  BrokerProcess broker_{sluiced_path(), {"--auto.create.topics.enable", "false"}};
};

class EveryCodec : public ClientIntegration, public ::testing::WithParamInterface<const char*> {};

TEST_P(EveryCodec, RoundTripKeysValuesHeadersTimestamps) {
  const std::string topic = std::string("codec-") + GetParam();
  create_topic(broker_.address(), topic, 3);
  ProducerConfig pc;
  pc.compression = GetParam();
  auto producer = make_producer(broker_.address(), pc);
  constexpr int kRecords = 3000;
  std::vector<std::future<RecordMetadata>> futures;
  for (int i = 0; i < kRecords; ++i) {
    ProducerRecord r;
    r.topic = topic;
    r.key = "key-" + std::to_string(i % 50);
    r.value = "value-" + std::to_string(i) + std::string(static_cast<size_t>(i % 100), 'x');
    r.headers = {{"h", "v" + std::to_string(i)}, {"null", std::nullopt}};
    r.timestamp_ms = 1'700'000'000'000 + i;
    futures.push_back(producer->send(std::move(r)));
  }
  ASSERT_TRUE(producer->flush());
  std::map<std::pair<int32_t, int64_t>, int> placed;
  for (int i = 0; i < kRecords; ++i) {
    RecordMetadata md = futures[i].get();
    ASSERT_TRUE(md.ok()) << md.error.message;
    EXPECT_EQ(md.partition, partitioner::partition_for_key("key-" + std::to_string(i % 50), 3));
    placed[{md.partition, md.offset}] = i;
  }
  ASSERT_EQ(placed.size(), static_cast<size_t>(kRecords)) << "offsets must be distinct";
  // The consumer is gone by now: the records' views (into the fetched bytes, or a compressed
  // batch's inflated ones) are kept valid by the records themselves (ASan in the checked build).
  auto records = read_all(broker_.address(), topic, 3, kRecords);
  ASSERT_EQ(records.size(), static_cast<size_t>(kRecords));
  for (const auto& r : records) {
    auto it = placed.find({r.partition, r.offset});
    ASSERT_NE(it, placed.end());
    const int i = it->second;
    EXPECT_EQ(r.key, "key-" + std::to_string(i % 50));
    EXPECT_EQ(r.value,
              "value-" + std::to_string(i) + std::string(static_cast<size_t>(i % 100), 'x'));
    ASSERT_EQ(r.headers.size(), 2u);
    EXPECT_EQ(r.headers[0].value, "v" + std::to_string(i));
    EXPECT_FALSE(r.headers[1].value.has_value());
    EXPECT_EQ(r.timestamp_ms, 1'700'000'000'000 + i);
  }
}

INSTANTIATE_TEST_SUITE_P(Codecs, EveryCodec,
                         ::testing::Values("none", "gzip", "snappy", "lz4", "zstd"));

TEST_F(ClientIntegration, AcksZeroAndOneDeliver) {
  create_topic(broker_.address(), "acks", 1);
  for (int acks : {0, 1}) {
    ProducerConfig pc;
    pc.acks = acks;
    auto producer = make_producer(broker_.address(), pc);
    for (int i = 0; i < 100; ++i) {
      ASSERT_TRUE(producer->send({.topic = "acks", .value = std::to_string(i)},
                                 [](const RecordMetadata&) {}));
    }
    auto md = producer->send({.topic = "acks", .value = "last"}).get();
    ASSERT_TRUE(md.ok()) << md.error.message;
    EXPECT_EQ(md.offset, acks == 0 ? -1 : 201);
    producer->close();
  }
  EXPECT_EQ(read_all(broker_.address(), "acks", 1, 202).size(), 202u);
}

TEST_F(ClientIntegration, KeylessRecordsStickToAPartitionPerBatch) {
  create_topic(broker_.address(), "sticky", 4);
  ProducerConfig pc;
  pc.linger_ms = 10000;  // one batch, closed by flush
  auto producer = make_producer(broker_.address(), pc);
  std::vector<std::future<RecordMetadata>> f;
  for (int i = 0; i < 50; ++i) f.push_back(producer->send({.topic = "sticky", .value = "v"}));
  ASSERT_TRUE(producer->flush());
  std::set<int32_t> partitions;
  for (auto& x : f) partitions.insert(x.get().partition);
  EXPECT_EQ(partitions.size(), 1u);
}

TEST_F(ClientIntegration, UnknownTopicAndBadPartitionFailClearly) {
  auto producer = make_producer(broker_.address());
  auto md = producer->send({.topic = "no-such-topic", .value = "v"}).get();
  EXPECT_EQ(md.error.code, 3);
  EXPECT_NE(md.error.message.find("create it first"), std::string::npos) << md.error.message;
  create_topic(broker_.address(), "one", 1);
  md = producer->send({.topic = "one", .partition = 5, .value = "v"}).get();
  EXPECT_EQ(md.error.code, static_cast<int>(client::Errc::kInvalidArgument));
}

TEST_F(ClientIntegration, FullBufferFailsWhenNotBlocking) {
  create_topic(broker_.address(), "full", 1);
  ProducerConfig pc;
  pc.buffer_memory = 4096;
  pc.batch_size = 2048;
  pc.linger_ms = 60000;
  pc.block_on_buffer_full = false;
  auto producer = make_producer(broker_.address(), pc);
  Status s;
  int accepted = 0;
  for (int i = 0; i < 100 && s; ++i) {
    s = producer->send({.topic = "full", .value = std::string(100, 'x')},
                       [](const RecordMetadata&) {});
    if (s) ++accepted;
  }
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, static_cast<int>(client::Errc::kBufferFull));
  EXPECT_GT(accepted, 0);
  ASSERT_TRUE(producer->flush());  // the accepted ones are delivered
  EXPECT_EQ(read_all(broker_.address(), "full", 1, accepted).size(), static_cast<size_t>(accepted));
}

TEST_F(ClientIntegration, SeekToBeginningEndOffsetAndTimestamp) {
  create_topic(broker_.address(), "seek", 1);
  auto producer = make_producer(broker_.address());
  for (int i = 0; i < 10; ++i) {
    producer->send({.topic = "seek", .value = std::to_string(i), .timestamp_ms = 1000 * (i + 1)});
  }
  ASSERT_TRUE(producer->flush());
  auto c = make_consumer(broker_.address());
  TopicPartition tp{"seek", 0};
  ASSERT_TRUE(c->assign({tp}));
  auto poll_one = [&]() -> std::optional<ConsumerRecord> {
    for (int i = 0; i < 50; ++i) {
      auto r = c->poll(std::chrono::milliseconds(100));
      EXPECT_TRUE(r);
      if (r && !r->empty()) return r->front();
    }
    return std::nullopt;
  };
  ASSERT_TRUE(c->seek(tp, 7));
  EXPECT_EQ(poll_one()->value, "7");
  ASSERT_TRUE(c->seek_to_beginning({tp}));
  EXPECT_EQ(poll_one()->offset, 0);
  ASSERT_TRUE(c->seek_to_timestamp({tp}, 4500));
  EXPECT_EQ(poll_one()->offset, 4);
  ASSERT_TRUE(c->seek_to_end({tp}));
  EXPECT_EQ(*c->position(tp), 10);
  auto wm = c->watermark_offsets(tp);
  ASSERT_TRUE(wm);
  EXPECT_EQ(wm->first, 0);
  EXPECT_EQ(wm->second, 10);
  EXPECT_FALSE(c->seek({"seek", 3}, 0));  // not assigned
}

TEST_F(ClientIntegration, PausedPartitionsAreNotReturnedUntilResumed) {
  create_topic(broker_.address(), "pause", 2);
  auto producer = make_producer(broker_.address());
  for (int p = 0; p < 2; ++p) {
    for (int i = 0; i < 5; ++i) producer->send({.topic = "pause", .partition = p, .value = "x"});
  }
  ASSERT_TRUE(producer->flush());
  auto c = make_consumer(broker_.address());
  std::vector<TopicPartition> tps = {{"pause", 0}, {"pause", 1}};
  ASSERT_TRUE(c->assign(tps));
  ASSERT_TRUE(c->seek_to_beginning(tps));
  c->pause({{"pause", 1}});
  int from0 = 0;
  for (int i = 0; i < 10; ++i) {
    auto r = c->poll(std::chrono::milliseconds(100));
    ASSERT_TRUE(r);
    for (const auto& rec : *r) {
      ASSERT_EQ(rec.partition, 0);
      ++from0;
    }
  }
  EXPECT_EQ(from0, 5);
  c->resume({{"pause", 1}});
  int from1 = 0;
  for (int i = 0; i < 50 && from1 < 5; ++i) {
    auto r = c->poll(std::chrono::milliseconds(100));
    ASSERT_TRUE(r);
    for (const auto& rec : *r) from1 += rec.partition == 1;
  }
  EXPECT_EQ(from1, 5);
}

// Two Sluice members of one group split the partitions, commit, and a later member resumes
// from the commits.
TEST_F(ClientIntegration, GroupMembersSplitPartitionsCommitAndLeave) {
  create_topic(broker_.address(), "grp", 4);
  auto producer = make_producer(broker_.address());
  for (int i = 0; i < 400; ++i) {
    ASSERT_TRUE(
        producer->send({.topic = "grp", .key = std::to_string(i), .value = std::to_string(i)},
                       [](const RecordMetadata&) {}));
  }
  ASSERT_TRUE(producer->flush());
  ConsumerConfig cc;
  cc.group_id = "g";
  cc.auto_offset_reset = "earliest";
  cc.enable_auto_commit = false;
  cc.heartbeat_interval_ms = 500;
  std::mutex mu;
  std::vector<int> values;
  std::atomic<bool> stop{false};
  std::atomic<int> assigned[2] = {0, 0};
  std::set<TopicPartition> owned[2];
  auto member = [&](int id) {
    auto c = make_consumer(broker_.address(), cc);
    ASSERT_TRUE(c->subscribe({"grp"}));
    while (!stop) {
      auto r = c->poll(std::chrono::milliseconds(200));
      ASSERT_TRUE(r) << r.error().message;
      {
        std::lock_guard lock(mu);
        for (const auto& rec : *r) values.push_back(std::stoi(std::string(*rec.value)));
        auto a = c->assignment();
        owned[id] = std::set<TopicPartition>(a.begin(), a.end());
        assigned[id] = static_cast<int>(a.size());
      }
      if (!r->empty()) {
        ASSERT_TRUE(c->commit_sync());
      }
    }
    c->close();
  };
  std::thread a(member, 0);
  std::thread b(member, 1);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(90);
  auto done = [&] {
    std::lock_guard lock(mu);
    return values.size() >= 400 && assigned[0] > 0 && assigned[1] > 0 &&
           assigned[0] + assigned[1] == 4;
  };
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  stop = true;
  a.join();
  b.join();
  std::set<int> distinct(values.begin(), values.end());
  EXPECT_EQ(distinct.size(), 400u);
  EXPECT_EQ(values.size(), 400u) << "no record delivered twice";
  EXPECT_EQ(assigned[0] + assigned[1], 4);
  for (const auto& tp : owned[0]) EXPECT_FALSE(owned[1].count(tp)) << tp.partition;

  auto later = make_consumer(broker_.address(), cc);
  std::vector<TopicPartition> tps = {{"grp", 0}, {"grp", 1}, {"grp", 2}, {"grp", 3}};
  auto committed = later->committed(tps);
  ASSERT_TRUE(committed) << committed.error().message;
  int64_t sum = 0;
  for (const auto& [tp, off] : *committed) sum += off;
  EXPECT_EQ(sum, 400);
}

// KIP-345 static membership: a member that closes does not leave the group, and one started
// again with its group.instance.id within the session timeout gets its partitions back without
// a rebalance (the other member sees none); a second consumer with the same id fences the first,
// whose poll() then fails with FENCED_INSTANCE_ID.
TEST_F(ClientIntegration, StaticMembersComeBackWithoutARebalanceAndAreFencedByTheirTwin) {
  create_topic(broker_.address(), "static", 4);
  struct Member {
    std::thread thread;
    std::atomic<bool> stop{false};
    std::atomic<int> assignments{0};  // on_assigned calls
    std::atomic<int> revocations{0};
    std::mutex mu;
    std::set<TopicPartition> owned;
    Error error;  // poll()'s, once it failed
  };
  auto start = [&](Member& m, const std::string& instance) {
    m.thread = std::thread([&m, instance, address = broker_.address()] {
      ConsumerConfig cc;
      cc.group_id = "static-g";
      cc.group_instance_id = instance;
      cc.heartbeat_interval_ms = 200;
      cc.session_timeout_ms = 30000;
      auto c = make_consumer(address, cc);
      RebalanceListener l;
      l.on_assigned = [&m](const std::vector<TopicPartition>&) { ++m.assignments; };
      l.on_revoked = [&m](const std::vector<TopicPartition>&) { ++m.revocations; };
      if (!c->subscribe({"static"}, l)) return;
      while (!m.stop) {
        auto r = c->poll(std::chrono::milliseconds(100));
        if (!r) {
          std::lock_guard lock(m.mu);
          m.error = r.error();
          break;
        }
        auto a = c->assignment();
        std::lock_guard lock(m.mu);
        m.owned = std::set<TopicPartition>(a.begin(), a.end());
      }
      c->close();
    });
  };
  auto wait_for = [](const std::function<bool()>& done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (!done() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return done();
  };
  auto owned = [](Member& m) {
    std::lock_guard lock(m.mu);
    return m.owned;
  };
  auto stop = [](Member& m) {
    m.stop = true;
    if (m.thread.joinable()) m.thread.join();
  };

  Member a, b;
  start(a, "instance-a");
  start(b, "instance-b");
  ASSERT_TRUE(wait_for([&] { return owned(a).size() == 2 && owned(b).size() == 2; }))
      << owned(a).size() << " " << owned(b).size();
  const std::set<TopicPartition> a_had = owned(a), b_had = owned(b);
  const int b_assignments = b.assignments;
  stop(a);  // closes without leaving

  Member again;
  start(again, "instance-a");
  ASSERT_TRUE(wait_for([&] { return owned(again).size() == 2; }));
  EXPECT_EQ(owned(again), a_had) << "the static member's partitions come back to it";
  std::this_thread::sleep_for(std::chrono::seconds(1));
  EXPECT_EQ(b.assignments, b_assignments) << "the other member saw no rebalance";
  EXPECT_EQ(owned(b), b_had);

  // A twin with the same group.instance.id takes the place; the one it replaced is fenced.
  Member twin;
  start(twin, "instance-a");
  ASSERT_TRUE(wait_for([&] {
    std::lock_guard lock(again.mu);
    return again.error.code != 0;
  }));
  {
    std::lock_guard lock(again.mu);
    EXPECT_EQ(again.error.code, static_cast<int>(kafka::ErrorCode::kFencedInstanceId))
        << again.error.message;
    EXPECT_NE(again.error.message.find("instance-a"), std::string::npos) << again.error.message;
  }
  ASSERT_TRUE(wait_for([&] { return owned(twin).size() == 2; }));
  stop(again);
  stop(twin);
  stop(b);
}

// Idempotence across a SIGKILL of the broker: every record acknowledged once, consumed once.
TEST_F(ClientIntegration, IdempotentProducerSurvivesBrokerKillWithoutDuplicates) {
  const int total = 1'000'000;  // the figure; about 4 s in the release build
  create_topic(broker_.address(), "idem", 3);
  ProducerConfig pc;
  pc.delivery_timeout_ms = 120000;
  pc.request_timeout_ms = 5000;
  auto producer = make_producer(broker_.address(), pc);
  std::atomic<int> acked{0};
  std::atomic<int> failed{0};
  std::thread sender([&] {
    for (int i = 0; i < total; ++i) {
      Status s = producer->send(
          {.topic = "idem", .key = std::to_string(i % 1000), .value = std::to_string(i)},
          [&](const RecordMetadata& md) { (md.ok() ? acked : failed)++; });
      ASSERT_TRUE(s) << s.error().message;
    }
  });
  while (acked < total / 4) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  broker_.kill9();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  broker_.restart();
  sender.join();
  ASSERT_TRUE(producer->flush());
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(acked.load(), total);
  auto records = read_all(broker_.address(), "idem", 3, total);
  std::vector<uint8_t> seen(total, 0);
  int duplicates = 0;
  for (const auto& r : records) {
    int v = std::stoi(std::string(*r.value));
    if (seen[v]++) ++duplicates;
  }
  EXPECT_EQ(duplicates, 0);
  EXPECT_EQ(records.size(), static_cast<size_t>(total));
}

// ---- stats and log callbacks -----------------------------------------------------------------

namespace pt = boost::property_tree;

// Collects stats documents and when they came.
struct StatsLog {
  std::mutex mu;
  std::vector<std::pair<std::chrono::steady_clock::time_point, std::string>> docs;
  StatsCallback callback() {
    return [this](const std::string& json) {
      std::lock_guard lock(mu);
      docs.emplace_back(std::chrono::steady_clock::now(), json);
    };
  }
  size_t size() {
    std::lock_guard lock(mu);
    return docs.size();
  }
  // The latest document, parsed (read_json throws on invalid JSON, failing the test).
  pt::ptree last() {
    std::lock_guard lock(mu);
    EXPECT_FALSE(docs.empty());
    pt::ptree tree;
    std::istringstream in(docs.empty() ? "{}" : docs.back().second);
    pt::read_json(in, tree);
    return tree;
  }
  // Every document parses; the gaps between them are about `interval_ms`.
  void expect_regular(int interval_ms) {
    std::lock_guard lock(mu);
    ASSERT_GE(docs.size(), 3u);
    for (size_t i = 0; i < docs.size(); ++i) {
      pt::ptree tree;
      std::istringstream in(docs[i].second);
      ASSERT_NO_THROW(pt::read_json(in, tree)) << docs[i].second;
      EXPECT_EQ(tree.get<int>("interval_ms"), interval_ms);
      if (i == 0) continue;
      auto gap =
          std::chrono::duration_cast<std::chrono::milliseconds>(docs[i].first - docs[i - 1].first);
      EXPECT_GE(gap.count(), interval_ms / 2) << i;
      EXPECT_LE(gap.count(), interval_ms * 3) << i;
    }
  }
};

// The single broker's entry (node 0), and the sums over brokers of `field`.
const pt::ptree& broker_zero(const pt::ptree& doc) {
  for (const auto& [k, b] : doc.get_child("brokers")) {
    if (b.get<int>("node_id") == 0) return b;
  }
  ADD_FAILURE() << "no broker 0 in the stats";
  return doc;
}

int64_t sum_over_brokers(const pt::ptree& doc, const std::string& field) {
  int64_t n = 0;
  for (const auto& [k, b] : doc.get_child("brokers")) n += b.get<int64_t>(field);
  return n;
}

TEST_F(ClientIntegration, ProducerStatsComeAtTheIntervalAndCountWhatWasSent) {
  create_topic(broker_.address(), "pstats", 2);
  StatsLog stats;
  ProducerConfig pc;
  ASSERT_TRUE(set_config(pc, "statistics.interval.ms", "200"));
  pc.stats_cb = stats.callback();
  pc.client_id = "stats-producer";
  auto producer = make_producer(broker_.address(), pc);
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(
        producer->send({.topic = "pstats", .partition = i % 2, .value = std::string(100, 'v')},
                       [](const RecordMetadata&) {}));
  }
  ASSERT_TRUE(producer->flush());
  const size_t before = stats.size();
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  EXPECT_GE(stats.size() - before, 3u);  // about 5 in 1.1 s
  EXPECT_LE(stats.size() - before, 8u);
  pt::ptree doc = stats.last();
  EXPECT_EQ(doc.get<std::string>("type"), "producer");
  EXPECT_EQ(doc.get<std::string>("name"), "stats-producer");
  EXPECT_EQ(doc.get<int64_t>("msgs_sent"), 100);
  EXPECT_EQ(doc.get<int64_t>("msg_bytes_sent"), 100 * 100);
  EXPECT_EQ(doc.get<int64_t>("msgs_failed"), 0);
  EXPECT_EQ(doc.get<int64_t>("msgs_queued"), 0);
  EXPECT_EQ(doc.get<int64_t>("msg_bytes_queued"), 0);
  EXPECT_EQ(doc.get<int64_t>("batches_inflight"), 0);
  EXPECT_EQ(doc.get<int64_t>("requests_inflight"), 0);
  EXPECT_EQ(doc.get<int64_t>("request_errors"), 0);
  EXPECT_EQ(doc.get<int64_t>("requests"), sum_over_brokers(doc, "requests"));
  EXPECT_EQ(doc.get<int64_t>("responses"), doc.get<int64_t>("requests"));
  EXPECT_GT(doc.get<int64_t>("tx_bytes"), 100 * 100);
  const pt::ptree& b0 = broker_zero(doc);
  EXPECT_TRUE(b0.get<bool>("connected"));
  EXPECT_FALSE(b0.get<bool>("bootstrap"));
  EXPECT_EQ(b0.get<std::string>("address"), broker_.address());
  // Produce requests went to broker 0 (ApiVersions, and a Metadata or two, too).
  EXPECT_GE(b0.get<int64_t>("requests"), 2);
  EXPECT_EQ(b0.get<int64_t>("responses"), b0.get<int64_t>("requests"));
  stats.expect_regular(200);
  // Round trips were measured in some window, and the windows add up to the answers.
  int64_t rtts = 0;
  {
    std::lock_guard lock(stats.mu);
    for (const auto& [at, json] : stats.docs) {
      pt::ptree d;
      std::istringstream in(json);
      pt::read_json(in, d);
      for (const auto& [k, b] : d.get_child("brokers")) {
        const int64_t count = b.get<int64_t>("rtt_us.count");
        rtts += count;
        if (count > 0) {
          EXPECT_GT(b.get<int64_t>("rtt_us.max"), 0);
          EXPECT_LE(b.get<int64_t>("rtt_us.min"), b.get<int64_t>("rtt_us.avg"));
          EXPECT_LE(b.get<int64_t>("rtt_us.avg"), b.get<int64_t>("rtt_us.max"));
        }
      }
    }
  }
  EXPECT_GT(rtts, 0);
  EXPECT_LE(rtts, doc.get<int64_t>("responses"));
  producer->close();
  const size_t closed_at = stats.size();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(stats.size(), closed_at) << "no stats after close()";
}

// linger.ms 0 sends a batch at once when it can go; records that come while the partition's
// requests are all out join the batch still open, instead of each becoming a batch and a
// request of its own (which queued one-record requests without bound at half the peak rate).
TEST_F(ClientIntegration, AtLingerZeroRecordsThatComeWhileRequestsAreOutShareABatch) {
  create_topic(broker_.address(), "linger0", 1);
  StatsLog stats;
  ProducerConfig pc;
  pc.linger_ms = 0;
  pc.max_in_flight = 1;
  ASSERT_TRUE(set_config(pc, "statistics.interval.ms", "100"));
  pc.stats_cb = stats.callback();
  auto producer = make_producer(broker_.address(), pc);
  constexpr int kRecords = 4000;
  auto next = std::chrono::steady_clock::now();
  for (int i = 0; i < kRecords; ++i) {
    // Paced (40,000 a second), as a producer at a fixed rate: each record finds the batch
    // before it already closed or sent, so only the ones that came meanwhile can join it.
    next += std::chrono::microseconds(25);
    while (std::chrono::steady_clock::now() < next) {
    }
    ASSERT_TRUE(producer->send(
        {.topic = "linger0", .partition = 0, .value = std::to_string(i) + std::string(1000, 'v')},
        [](const RecordMetadata& md) { ASSERT_TRUE(md.ok()) << md.error.message; }));
  }
  ASSERT_TRUE(producer->flush());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  pt::ptree doc = stats.last();
  EXPECT_EQ(doc.get<int64_t>("msgs_sent"), kRecords);
  // (Here: 52 requests; 1,068 before, each with a batch of about four records.)
  EXPECT_LT(doc.get<int64_t>("requests"), kRecords / 10);
  const auto records = read_all(broker_.address(), "linger0", 1, kRecords);
  ASSERT_EQ(records.size(), static_cast<size_t>(kRecords));
  for (int i = 0; i < kRecords; ++i) {
    EXPECT_EQ(records[i].offset, i);
    ASSERT_EQ(records[i].value->substr(0, std::to_string(i).size()), std::to_string(i));
  }
}

TEST_F(ClientIntegration, ConsumerStatsCountWhatWasReadAndStatsAreOffByDefault) {
  create_topic(broker_.address(), "cstats", 1);
  StatsLog off;
  ProducerConfig pc;
  pc.stats_cb = off.callback();  // statistics_interval_ms stays 0: off
  auto producer = make_producer(broker_.address(), pc);
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(producer->send({.topic = "cstats", .key = "k", .value = std::string(20, 'v')},
                               [](const RecordMetadata&) {}));
  }
  ASSERT_TRUE(producer->flush());
  StatsLog stats;
  ConsumerConfig cc;
  cc.statistics_interval_ms = 150;
  cc.stats_cb = stats.callback();
  auto consumer = make_consumer(broker_.address(), cc);
  TopicPartition tp{"cstats", 0};
  ASSERT_TRUE(consumer->assign({tp}));
  ASSERT_TRUE(consumer->seek_to_beginning({tp}));
  size_t got = 0;
  for (int i = 0; i < 50 && got < 50; ++i) {
    auto r = consumer->poll(std::chrono::milliseconds(200));
    ASSERT_TRUE(r) << r.error().message;
    got += r->size();
  }
  ASSERT_EQ(got, 50u);
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  pt::ptree doc = stats.last();
  EXPECT_EQ(doc.get<std::string>("type"), "consumer");
  EXPECT_EQ(doc.get<int64_t>("msgs_received"), 50);
  EXPECT_EQ(doc.get<int64_t>("msg_bytes_received"), 50 * (1 + 20));
  EXPECT_EQ(doc.get<int64_t>("msgs_polled"), 50);
  EXPECT_EQ(doc.get<int64_t>("msgs_queued"), 0);
  EXPECT_EQ(doc.get<int64_t>("fetch_errors"), 0);
  EXPECT_GE(broker_zero(doc).get<int64_t>("requests"), 2);  // ListOffsets, Fetch
  stats.expect_regular(150);
  EXPECT_EQ(off.size(), 0u) << "statistics_interval_ms=0 must not call stats_cb";
}

// Sets a client id's produce or fetch byte rate quota through AlterClientQuotas.
void set_quota(const std::string& address, const std::string& client_id, const std::string& key,
               double value) {
  client::ClientConfig cc;
  cc.bootstrap_servers = {address};
  client::Client c(cc);
  kafka::AlterClientQuotasRequest req;
  kafka::AlterClientQuotasRequest::EntryData entry;
  entry.entity.push_back({"client-id", client_id});
  entry.ops.push_back({key, value, false});
  req.entries.push_back(entry);
  auto r = c.call_as<kafka::AlterClientQuotasResponse>(client::kAnyBroker, req);
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->entries.at(0).error_code, 0);
}

// Throttles reported in every stats document, and the request errors and disconnects of the
// last one.
struct ThrottleSeen {
  int64_t throttles = 0, max_ms = 0, errors = 0, disconnects = 0;
};
ThrottleSeen throttles_in(StatsLog& stats) {
  ThrottleSeen seen;
  std::lock_guard lock(stats.mu);
  for (const auto& [at, json] : stats.docs) {
    pt::ptree d;
    std::istringstream in(json);
    pt::read_json(in, d);
    seen.errors = d.get<int64_t>("request_errors");
    seen.disconnects = 0;
    for (const auto& [k, b] : d.get_child("brokers")) {
      seen.throttles += b.get<int64_t>("throttle_ms.count");
      seen.max_ms = std::max(seen.max_ms, b.get<int64_t>("throttle_ms.max"));
      seen.disconnects += b.get<int64_t>("disconnects");
    }
  }
  return seen;
}

// KIP-219: a client over its quota is told how long to wait (throttle_time_ms) and the broker
// stops reading its connection meanwhile. The library waits before sending its next requests:
// with a request timeout shorter than the throttles, requests written anyway would sit unread
// in the broker's socket past their deadline, time out and reconnect (request_errors and
// disconnects), which is what this test saw before the library waited. (Requests already out
// when the throttle comes cannot be called back: the broker reads them one at a time, each
// throttled in turn; with the default 30 s request timeout that is rarely a concern.)
TEST(ClientQuota, ProducerAndConsumerOverTheirQuotasWaitOutTheThrottleWithoutTimingOut) {
  // A window of 3 s of 1 s samples, so a throttle is ~2 s and the test takes ~15 s.
  BrokerProcess broker(sluiced_path(),
                       {"--auto.create.topics.enable", "false", "--quota.window.num", "3",
                        "--quota.window.size.seconds", "1"});
  create_topic(broker.address(), "throttled", 1);
  set_quota(broker.address(), "slow-producer", "producer_byte_rate", 100000);
  set_quota(broker.address(), "slow-consumer", "consumer_byte_rate", 100000);
  constexpr int kRecords = 80;  // 800 kB: about 5 s over what the window lets through
  const std::string value(10000, 'q');

  StatsLog pstats;
  ProducerConfig pc;
  pc.client_id = "slow-producer";
  pc.batch_size = 64 << 10;
  // One request at a time: requests already written when a throttle comes wait at the broker,
  // each longer than the one before (the broker reads them one by one, throttling each).
  pc.max_in_flight = 1;
  pc.request_timeout_ms = 1000;
  pc.statistics_interval_ms = 100;
  pc.stats_cb = pstats.callback();
  auto producer = make_producer(broker.address(), pc);
  const auto start = std::chrono::steady_clock::now();
  std::atomic<int> delivered{0}, failed{0};
  for (int i = 0; i < kRecords; ++i) {
    ASSERT_TRUE(
        producer->send({.topic = "throttled", .partition = 0, .value = value},
                       [&](const RecordMetadata& md) { (md.ok() ? delivered : failed)++; }));
  }
  ASSERT_TRUE(producer->flush());
  const double produce_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::this_thread::sleep_for(std::chrono::milliseconds(250));  // the last stats
  producer->close();
  EXPECT_EQ(delivered, kRecords);
  EXPECT_EQ(failed, 0);
  const ThrottleSeen p = throttles_in(pstats);
  EXPECT_GT(p.throttles, 0);
  EXPECT_GT(p.max_ms, pc.request_timeout_ms) << "the throttles should outlast a request";
  EXPECT_EQ(p.errors, 0) << "no request may time out waiting at a broker that is not reading";
  EXPECT_EQ(p.disconnects, 0);
  // Held to the quota: 800 kB at 100 kB/s with ~300 kB let through at once, at least 3 s.
  EXPECT_GE(produce_s, 3.0);

  StatsLog cstats;
  ConsumerConfig cc;
  cc.client_id = "slow-consumer";
  // A Fetch's deadline is its wait plus the request timeout; both shorter than a throttle.
  cc.request_timeout_ms = 500;
  cc.fetch_max_wait_ms = 100;
  cc.max_partition_fetch_bytes = 64 << 10;
  cc.statistics_interval_ms = 100;
  cc.stats_cb = cstats.callback();
  auto consumer = make_consumer(broker.address(), cc);
  ASSERT_TRUE(consumer->assign({{"throttled", 0}}));
  ASSERT_TRUE(consumer->seek_to_beginning({{"throttled", 0}}));
  size_t got = 0;
  const auto read_start = std::chrono::steady_clock::now();
  while (got < static_cast<size_t>(kRecords) &&
         std::chrono::steady_clock::now() - read_start < std::chrono::seconds(60)) {
    auto r = consumer->poll(std::chrono::milliseconds(200));
    ASSERT_TRUE(r) << r.error().message;
    for (const auto& rec : *r) {
      EXPECT_EQ(rec.offset, static_cast<int64_t>(got));
      ++got;
    }
  }
  const double consume_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - read_start).count();
  std::this_thread::sleep_for(std::chrono::milliseconds(250));
  consumer->close();
  EXPECT_EQ(got, static_cast<size_t>(kRecords));
  const ThrottleSeen c = throttles_in(cstats);
  EXPECT_GT(c.throttles, 0);
  EXPECT_GT(c.max_ms, cc.request_timeout_ms + cc.fetch_max_wait_ms);
  EXPECT_EQ(c.errors, 0);
  EXPECT_EQ(c.disconnects, 0);
  EXPECT_GE(consume_s, 3.0);
}

TEST_F(ClientIntegration, LogCallbackGetsTheLibrarysLinesInsteadOfStderr) {
  create_topic(broker_.address(), "logs", 1);
  std::mutex mu;
  std::vector<std::pair<LogLevel, std::string>> lines;
  auto log = [&](LogLevel level, const std::string& message) {
    std::lock_guard lock(mu);
    lines.emplace_back(level, message);
  };
  auto count = [&](LogLevel level, const std::string& part) {
    std::lock_guard lock(mu);
    return std::count_if(lines.begin(), lines.end(), [&](const auto& l) {
      return l.first == level && l.second.find(part) != std::string::npos;
    });
  };
  // A consumer warning (an out-of-range position reset) goes to log_cb, not to stderr.
  auto producer = make_producer(broker_.address());
  ASSERT_TRUE(producer->send({.topic = "logs", .value = "v"}).get().ok());
  ConsumerConfig cc;
  cc.auto_offset_reset = "earliest";
  cc.log_cb = log;
  auto consumer = make_consumer(broker_.address(), cc);
  TopicPartition tp{"logs", 0};
  ASSERT_TRUE(consumer->assign({tp}));
  ASSERT_TRUE(consumer->seek(tp, 1000));
  ::testing::internal::CaptureStderr();
  std::vector<ConsumerRecord> got;
  for (int i = 0; i < 20 && got.empty(); ++i) {
    auto r = consumer->poll(std::chrono::milliseconds(200));
    ASSERT_TRUE(r) << r.error().message;
    got = std::move(*r);
  }
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(count(LogLevel::kWarning, "out of range"), 1);
  // A broker killed under a producer: the lost connection is logged (notice), the record is
  // still delivered after the restart.
  ProducerConfig pc;
  pc.log_cb = log;
  pc.request_timeout_ms = 3000;
  auto logged = make_producer(broker_.address(), pc);
  ASSERT_TRUE(logged->send({.topic = "logs", .value = "before"}).get().ok());
  broker_.kill9();
  auto during = logged->send({.topic = "logs", .value = "during"});
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  broker_.restart();
  RecordMetadata md = during.get();
  EXPECT_TRUE(md.ok()) << md.error.message;
  EXPECT_GE(count(LogLevel::kNotice, broker_.address()), 1);
  // log_level drops the lines above it.
  ProducerConfig quiet;
  ASSERT_TRUE(set_config(quiet, "log_level", "4"));
  EXPECT_EQ(quiet.log_level, 4);
  EXPECT_FALSE(set_config(quiet, "statistics.interval.ms", "soon"));
  quiet.log_level = 9;
  quiet.bootstrap_servers = broker_.address();
  auto bad = Producer::create(quiet);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, static_cast<int>(client::Errc::kInvalidArgument));
}

// The value handle: open() and a Producer / Consumer moved around by value.
// Transactions with the library's own producer and consumer: commit, abort, offsets sent with
// the transaction, calls out of order, and fencing by a second producer of the same id.
TEST_F(ClientIntegration, TransactionsCommitAbortAndCommitOffsets) {
  create_topic(broker_.address(), "txn-lib", 2);
  create_topic(broker_.address(), "txn-src", 1);
  ProducerConfig config;
  config.transactional_id = "lib-txn";
  auto p = make_producer(broker_.address(), config);
  ASSERT_TRUE(p);
  auto early = p->send({.topic = "txn-lib", .value = "x"}).get();
  EXPECT_EQ(early.error.code, static_cast<int>(client::Errc::kInvalidState)) << early.error.message;
  ASSERT_TRUE(p->init_transactions());
  EXPECT_FALSE(p->commit_transaction());  // no transaction open
  ASSERT_TRUE(p->begin_transaction());
  std::vector<std::future<RecordMetadata>> acks;
  for (int i = 0; i < 20; ++i) {
    acks.push_back(p->send({.topic = "txn-lib",
                            .key = "k" + std::to_string(i),
                            .value = "commit-" + std::to_string(i)}));
  }
  ASSERT_TRUE(p->commit_transaction());
  for (auto& a : acks) EXPECT_TRUE(a.get().ok());
  ASSERT_TRUE(p->begin_transaction());
  for (int i = 0; i < 10; ++i) {
    (void)p->send({.topic = "txn-lib",
                   .key = "k" + std::to_string(i),
                   .value = "abort-" + std::to_string(i)});
  }
  ASSERT_TRUE(p->flush());  // in the log before the abort
  ASSERT_TRUE(p->abort_transaction());
  ASSERT_TRUE(p->begin_transaction());
  for (int i = 0; i < 5; ++i) {
    (void)p->send({.topic = "txn-lib", .partition = 0, .value = "offsets-" + std::to_string(i)});
  }
  ASSERT_TRUE(p->send_offsets_to_transaction({{TopicPartition{"txn-src", 0}, 3}}, "lib-group"));
  ASSERT_TRUE(p->commit_transaction());

  // read_committed sees the 25 committed records; read_uncommitted all 35.
  ConsumerConfig cc;
  cc.bootstrap_servers = broker_.address();
  cc.isolation_level = "read_committed";
  auto committed = make_consumer(broker_.address(), cc);
  std::vector<TopicPartition> tps{{"txn-lib", 0}, {"txn-lib", 1}};
  ASSERT_TRUE(committed->assign(tps));
  ASSERT_TRUE(committed->seek_to_beginning(tps));
  std::vector<std::string> values;
  auto start = std::chrono::steady_clock::now();
  while (values.size() < 25 &&
         std::chrono::steady_clock::now() - start < std::chrono::seconds(30)) {
    auto r = committed->poll(std::chrono::milliseconds(200));
    ASSERT_TRUE(r) << r.error().message;
    for (auto& rec : *r) values.emplace_back(*rec.value);
  }
  EXPECT_EQ(values.size(), 25u);
  for (const auto& v : values) EXPECT_EQ(v.rfind("abort-", 0), std::string::npos) << v;
  EXPECT_EQ(read_all(broker_.address(), "txn-lib", 2, 35).size(), 35u);

  // The offsets became the group's with the commit (its markers follow the commit's answer).
  ConsumerConfig gc;
  gc.group_id = "lib-group";
  auto group = make_consumer(broker_.address(), gc);
  EXPECT_EQ(committed_soon(*group, {"txn-src", 0}, 3), 3);

  // A second producer of the id fences the first: its next transaction call fails for good.
  ASSERT_TRUE(p->begin_transaction());
  ASSERT_TRUE(p->send({.topic = "txn-lib", .partition = 1, .value = "zombie"}).get().ok());
  auto second = make_producer(broker_.address(), config);
  ASSERT_TRUE(second->init_transactions());
  auto fenced = p->commit_transaction();
  ASSERT_FALSE(fenced);
  EXPECT_TRUE(fenced.error().code == static_cast<int>(kafka::ErrorCode::kProducerFenced) ||
              fenced.error().code == static_cast<int>(kafka::ErrorCode::kInvalidProducerEpoch))
      << fenced.error().message;
  auto again = p->begin_transaction();
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, fenced.error().code);
}

// KIP-447: offsets sent with the consumer's group metadata commit while it is the group's
// member, and are refused (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID) for a member or generation
// the group does not have: a zombie's transaction must abort.
TEST_F(ClientIntegration, TransactionalOffsetsCarryTheConsumersGroupMembership) {
  create_topic(broker_.address(), "txn-in", 1);
  create_topic(broker_.address(), "txn-out", 1);
  ConsumerConfig cc;
  cc.group_id = "txn-members";
  auto c = make_consumer(broker_.address(), cc);
  EXPECT_EQ(c->group_metadata().generation_id, -1);  // not joined yet
  ASSERT_TRUE(c->subscribe({"txn-in"}));
  auto start = std::chrono::steady_clock::now();
  while (c->assignment().empty() &&
         std::chrono::steady_clock::now() - start < std::chrono::seconds(30)) {
    auto r = c->poll(std::chrono::milliseconds(200));
    ASSERT_TRUE(r) << r.error().message;
  }
  ASSERT_EQ(c->assignment().size(), 1u);
  const ConsumerGroupMetadata member = c->group_metadata();
  EXPECT_EQ(member.group_id, "txn-members");
  EXPECT_GE(member.generation_id, 1);
  EXPECT_FALSE(member.member_id.empty());

  ProducerConfig config;
  config.transactional_id = "txn-member-app";
  auto p = make_producer(broker_.address(), config);
  ASSERT_TRUE(p->init_transactions());
  ASSERT_TRUE(p->begin_transaction());
  (void)p->send({.topic = "txn-out", .value = "processed"});
  ASSERT_TRUE(p->send_offsets_to_transaction({{TopicPartition{"txn-in", 0}, 7}}, member));
  ASSERT_TRUE(p->commit_transaction());
  EXPECT_EQ(committed_soon(*c, {"txn-in", 0}, 7), 7);

  ConsumerGroupMetadata stale = member;
  stale.generation_id += 1;  // a generation the group has not reached
  ASSERT_TRUE(p->begin_transaction());
  auto refused = p->send_offsets_to_transaction({{TopicPartition{"txn-in", 0}, 9}}, stale);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, static_cast<int>(kafka::ErrorCode::kIllegalGeneration))
      << refused.error().message;
  ConsumerGroupMetadata zombie = member;
  zombie.member_id = "zombie-member";
  refused = p->send_offsets_to_transaction({{TopicPartition{"txn-in", 0}, 9}}, zombie);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, static_cast<int>(kafka::ErrorCode::kUnknownMemberId))
      << refused.error().message;
  ASSERT_TRUE(p->abort_transaction());  // not fatal: the producer goes on
  ASSERT_TRUE(p->begin_transaction());
  ASSERT_TRUE(p->send_offsets_to_transaction({{TopicPartition{"txn-in", 0}, 8}}, member));
  ASSERT_TRUE(p->commit_transaction());
  EXPECT_EQ(committed_soon(*c, {"txn-in", 0}, 8), 8);
  c->close();
}

TEST_F(ClientIntegration, OpenReturnsMovableValues) {
  create_topic(broker_.address(), "values", 1);
  ProducerConfig pc;
  pc.bootstrap_servers = broker_.address();
  auto opened = Producer::open(pc);
  ASSERT_TRUE(opened) << opened.error().message;
  ASSERT_TRUE(opened->send({.topic = "values", .value = "a"}).get().ok());
  Producer producer = std::move(*opened);
  ASSERT_TRUE(producer.send({.topic = "values", .value = "b"}).get().ok());
  Producer other = std::move(producer);
  ASSERT_TRUE(other.send({.topic = "values", .value = "c"}).get().ok());
  other.close();
  ConsumerConfig cc;
  cc.bootstrap_servers = broker_.address();
  auto c = Consumer::open(cc);
  ASSERT_TRUE(c) << c.error().message;
  Consumer consumer = std::move(*c);
  TopicPartition tp{"values", 0};
  ASSERT_TRUE(consumer.assign({tp}));
  ASSERT_TRUE(consumer.seek_to_beginning({tp}));
  std::vector<std::string> values;
  for (int i = 0; i < 20 && values.size() < 3; ++i) {
    auto r = consumer.poll(std::chrono::milliseconds(200));
    ASSERT_TRUE(r) << r.error().message;
    for (const auto& rec : *r) values.emplace_back(*rec.value);
  }
  EXPECT_EQ(values, (std::vector<std::string>{"a", "b", "c"}));
  // A failed open() with stats on: the timer fires while create() retries, and stops before
  // the consumer's members go (the sanitizer build checks the order).
  cc.bootstrap_servers = "127.0.0.1:1";
  std::atomic<int> calls{0};
  cc.statistics_interval_ms = 20;
  cc.stats_cb = [&calls](const std::string&) { ++calls; };
  EXPECT_FALSE(Consumer::open(cc));
  EXPECT_GT(calls.load(), 0);
  pc.bootstrap_servers = "127.0.0.1:1";
  pc.statistics_interval_ms = 20;
  pc.stats_cb = [&calls](const std::string&) { ++calls; };
  EXPECT_FALSE(Producer::open(pc));
}

}  // namespace
}  // namespace sluice
