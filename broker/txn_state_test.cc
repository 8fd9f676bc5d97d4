#include "broker/txn_state.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "broker/group_records.h"
#include "broker/txn_coordinator.h"
#include "broker/txn_file.h"
#include "log/io_ring.h"
#include "log/tests/test_util.h"

#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

namespace sluice::broker {
namespace {

using kafka::ErrorCode;

std::vector<std::byte> hex_bytes(const std::string& hex) {
  std::vector<std::byte> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<std::byte>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

// The transaction log's records in Kafka's layout (TransactionLogKey/Value v0), byte for byte.
TEST(TxnLog, RecordsAreKafkasLayout) {
  EXPECT_EQ(encode_txn_key("tx"), hex_bytes("0000"
                                            "00027478"));
  TxnMetadata m;
  m.producer_id = 1000;
  m.producer_epoch = 3;
  m.timeout_ms = 60000;
  m.status = TxnStatus::kOngoing;
  m.partitions = {{"t", 2}, {"t", 0}};
  m.update_ms = 5;
  m.start_ms = 4;
  const auto value = encode_txn_value(m);
  EXPECT_EQ(value, hex_bytes("0000"
                             "00000000000003e8"
                             "0003"
                             "0000ea60"
                             "01"
                             "00000001"
                             "000174"
                             "00000002"
                             "00000000"
                             "00000002"
                             "0000000000000005"
                             "0000000000000004"));
  auto back = decode_txn_value(value);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->producer_id, 1000);
  EXPECT_EQ(back->producer_epoch, 3);
  EXPECT_EQ(back->timeout_ms, 60000);
  EXPECT_EQ(back->status, TxnStatus::kOngoing);
  EXPECT_EQ(back->partitions, m.partitions);
  EXPECT_EQ(back->update_ms, 5);
  EXPECT_EQ(back->start_ms, 4);
  EXPECT_EQ(decode_txn_key(encode_txn_key("tx")), "tx");
  // An Empty transaction has no partitions: a null array, as Kafka writes it.
  m.status = TxnStatus::kEmpty;
  m.partitions.clear();
  const auto empty = encode_txn_value(m);
  EXPECT_EQ(std::vector<std::byte>(empty.begin() + 17, empty.begin() + 21), hex_bytes("ffffffff"));
  ASSERT_TRUE(decode_txn_value(empty));
  EXPECT_TRUE(decode_txn_value(empty)->partitions.empty());
  // Unknown versions, statuses and short values are skipped, not misread.
  auto bad = value;
  bad[1] = std::byte{1};
  EXPECT_FALSE(decode_txn_value(bad));
  bad = value;
  bad[16] = std::byte{9};
  EXPECT_FALSE(decode_txn_value(bad));
  EXPECT_FALSE(decode_txn_value(Bytes(value.data(), value.size() - 1)));
  EXPECT_FALSE(
      decode_txn_key(hex_bytes("0001"
                               "00027478")));
}

// Kafka's partition of a transactional id: Java's String.hashCode, as for groups.
TEST(TxnLog, PartitionIsJavasHash) {
  EXPECT_EQ(txn_partition_for("span", 3), offsets_partition_for("span", 3));
  // "a".hashCode() = 97; 97 % 50 = 47.
  EXPECT_EQ(txn_partition_for("a", 50), 47);
}

TEST(TxnTable, WithoutTransactionsTheStableOffsetIsTheHighWatermark) {
  TxnTable t;
  EXPECT_FALSE(t.first_unstable_offset());
  EXPECT_EQ(t.last_stable_offset(42), 42);
  EXPECT_TRUE(t.aborted_in(0, 100).empty());
}

TEST(TxnTable, AnOpenTransactionHoldsTheStableOffsetAtItsFirstBatch) {
  TxnTable t;
  t.on_data(7, 10);
  t.on_data(7, 12);  // the same transaction
  t.on_data(8, 11);
  EXPECT_EQ(t.last_stable_offset(20), 10);
  EXPECT_EQ(t.last_stable_offset(5), 5);
  t.on_marker(7, 13, /*commit=*/true, 0);
  EXPECT_EQ(t.last_stable_offset(20), 10) << "completed, but its marker is not below the floor";
  t.set_floor(14);
  EXPECT_EQ(t.last_stable_offset(20), 11) << "producer 8's is still open";
  t.on_marker(8, 14, /*commit=*/true, 0);
  t.set_floor(15);
  EXPECT_EQ(t.last_stable_offset(20), 20);
  EXPECT_TRUE(t.aborted().empty()) << "commits are not listed";
}

TEST(TxnTable, AbortedTransactionsAreListedOnceStable) {
  TxnTable t;
  t.on_data(7, 100);
  t.on_data(7, 105);
  t.on_marker(7, 110, /*commit=*/false, 3);
  EXPECT_TRUE(t.aborted().empty());
  t.set_floor(110);
  EXPECT_TRUE(t.aborted().empty()) << "the marker itself must be below the floor";
  t.set_floor(111);
  ASSERT_EQ(t.aborted().size(), 1u);
  EXPECT_EQ(t.aborted()[0], (AbortedTxn{7, 100, 110}));
  // Kafka's overlap rule: last >= fetch offset and first < upper bound.
  EXPECT_EQ(t.aborted_in(0, 100).size(), 0u);
  EXPECT_EQ(t.aborted_in(0, 101).size(), 1u);
  EXPECT_EQ(t.aborted_in(110, 200).size(), 1u);
  EXPECT_EQ(t.aborted_in(111, 200).size(), 0u);
}

TEST(TxnTable, AMarkerWithoutBatchesCompletesAnEmptyTransaction) {
  TxnTable t;
  t.on_marker(7, 50, /*commit=*/false, 0);
  EXPECT_EQ(t.first_unstable_offset(), 50);
  t.set_floor(51);
  EXPECT_FALSE(t.first_unstable_offset());
  ASSERT_EQ(t.aborted().size(), 1u);
  EXPECT_EQ(t.aborted()[0], (AbortedTxn{7, 50, 50}));
}

TEST(TxnTable, AnOlderCoordinatorEpochIsFenced) {
  TxnTable t;
  EXPECT_EQ(t.check_marker(7, 0), ErrorCode::kNone);
  t.on_marker(7, 1, true, 5);
  EXPECT_EQ(t.check_marker(7, 4), ErrorCode::kTransactionCoordinatorFenced);
  EXPECT_EQ(t.check_marker(7, 5), ErrorCode::kNone);
  EXPECT_EQ(t.check_marker(8, 0), ErrorCode::kNone) << "per producer";
  t.cut(1);  // the marker is gone: so is the epoch it set
  EXPECT_EQ(t.check_marker(7, 4), ErrorCode::kNone);
}

TEST(TxnTable, ACutReopensATransactionWhoseMarkerItTakes) {
  TxnTable t;
  t.on_data(7, 10);
  t.on_marker(7, 20, /*commit=*/false, 0);
  t.on_data(7, 21);  // the next transaction
  t.cut(15);
  EXPECT_TRUE(t.open(7));
  EXPECT_EQ(t.first_unstable_offset(), 10);
  t.on_marker(7, 15, /*commit=*/true, 0);  // the new leader's log commits it instead
  t.set_floor(16);
  EXPECT_FALSE(t.first_unstable_offset());
  EXPECT_TRUE(t.aborted().empty());
}

TEST(TxnTable, TrimDropsAbortedTransactionsBelowTheLogStart) {
  TxnTable t;
  t.on_data(1, 0);
  t.on_marker(1, 5, false, 0);
  t.on_data(2, 6);
  t.on_marker(2, 9, false, 0);
  t.set_floor(10);
  t.trim(5);
  ASSERT_EQ(t.aborted().size(), 2u) << "the first one's marker is at the new start";
  t.trim(6);
  ASSERT_EQ(t.aborted().size(), 1u);
  EXPECT_EQ(t.aborted()[0].producer_id, 2);
}

TEST(TxnTable, ALongAbortedTransactionIsFoundPastShorterOnes) {
  TxnTable t;
  t.on_data(1, 0);  // spans everything below
  for (int64_t i = 0; i < 100; ++i) {
    t.on_data(10 + i, 10 + 3 * i);
    t.on_marker(10 + i, 11 + 3 * i, false, 0);
  }
  t.on_marker(1, 400, false, 0);
  t.set_floor(401);
  auto found = t.aborted_in(5, 6);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].producer_id, 1);
  EXPECT_EQ(t.aborted_in(300, 1000).size(), 4u) << "the long one and the last three short ones";
  EXPECT_EQ(t.aborted_in(0, 1000).size(), 101u);
}

// The table against a model that replays the log it was fed from scratch: random transactional
// batches, commits, aborts, a floor that rises and cuts at or above it, as a Raft follower's log
// sees them. Every step compares the first unstable offset, the open producers and the aborted
// list, and a few aborted_in() queries.
struct Event {
  int64_t offset;
  int64_t producer;
  int kind;  // 0 data, 1 commit, 2 abort
};

struct Model {
  std::vector<Event> log;
  int64_t floor = INT64_MIN;
  int64_t log_end = 0;  // other batches lie between the events
  int64_t end() const { return log_end; }

  void replay(std::map<int64_t, int64_t>& open, std::vector<AbortedTxn>& aborted,
              std::optional<int64_t>& first_unstable) const {
    std::vector<int64_t> unstable;
    for (const Event& e : log) {
      if (e.kind == 0) {
        open.emplace(e.producer, e.offset);
        continue;
      }
      int64_t first = e.offset;
      if (auto it = open.find(e.producer); it != open.end()) {
        first = it->second;
        open.erase(it);
      }
      if (e.offset >= floor) {
        unstable.push_back(first);
      } else if (e.kind == 2) {
        aborted.push_back({e.producer, first, e.offset});
      }
    }
    for (const auto& [p, first] : open) unstable.push_back(first);
    if (!unstable.empty()) first_unstable = *std::min_element(unstable.begin(), unstable.end());
  }
};

TEST(TxnTable, MatchesAReplayOfTheLogUnderRandomCuts) {
  const char* given = std::getenv("SLUICE_SEED");  // replays a failure
  const uint32_t seed =
      given ? static_cast<uint32_t>(std::strtoul(given, nullptr, 10)) : std::random_device{}();
  SCOPED_TRACE("SLUICE_SEED=" + std::to_string(seed));
  std::printf("SLUICE_SEED=%u\n", seed);
  std::mt19937 rng(seed);
  for (int round = 0; round < 200; ++round) {
    TxnTable t;
    Model m;
    for (int step = 0; step < 300; ++step) {
      const int what = static_cast<int>(rng() % 20);
      const int64_t producer = static_cast<int64_t>(rng() % 4);
      const int64_t at = m.end() + static_cast<int64_t>(rng() % 3);  // gaps: other batches
      if (what < 12) {
        m.log.push_back({at, producer, 0});
        m.log_end = at + 1;
        t.on_data(producer, at);
      } else if (what < 16) {
        const bool commit = rng() % 2 == 0;
        m.log.push_back({at, producer, commit ? 1 : 2});
        m.log_end = at + 1;
        t.on_marker(producer, at, commit, 0);
      } else if (what < 18) {
        const int64_t to = std::max(m.floor, m.end() - static_cast<int64_t>(rng() % 8));
        m.floor = std::max(m.floor, to);
        t.set_floor(to);
      } else {
        const int64_t low = std::max<int64_t>(m.floor, 0);
        if (m.end() <= low) continue;
        const int64_t cut = low + static_cast<int64_t>(rng() % (m.end() - low + 1));
        while (!m.log.empty() && m.log.back().offset >= cut) m.log.pop_back();
        m.log_end = cut;
        t.cut(cut);
      }
      std::map<int64_t, int64_t> open;
      std::vector<AbortedTxn> aborted;
      std::optional<int64_t> first_unstable;
      m.replay(open, aborted, first_unstable);
      ASSERT_EQ(t.first_unstable_offset(), first_unstable) << "round " << round << " step " << step;
      for (int64_t p = 0; p < 4; ++p) ASSERT_EQ(t.open(p), open.count(p) != 0) << p;
      ASSERT_EQ(std::vector<AbortedTxn>(t.aborted().begin(), t.aborted().end()), aborted);
      const int64_t from = m.end() > 0 ? static_cast<int64_t>(rng() % m.end()) : 0;
      const int64_t to = from + static_cast<int64_t>(rng() % 20);
      std::vector<AbortedTxn> expected;
      for (const AbortedTxn& a : aborted) {
        if (a.last_offset >= from && a.first_offset < to) expected.push_back(a);
      }
      ASSERT_EQ(t.aborted_in(from, to), expected) << "[" << from << ", " << to << ")";
    }
  }
}

TEST(TxnFile, SavesAbortedTransactionsAndTheReplayOffset) {
  log::testing::TempDir dir;
  log::IoRing ring;
  EXPECT_FALSE(load_txn_file(dir.path()).replay_from) << "no file: no transaction ever";
  TxnTable t;
  t.on_data(1, 10);
  t.on_marker(1, 12, /*commit=*/false, 0);
  t.on_data(2, 13);  // open
  t.set_floor(14);
  auto file = std::make_shared<TxnFile>(dir.path(), ring, TxnFileContents{});
  file->save(t, 0);
  ring.drain();
  EXPECT_FALSE(file->busy());
  auto loaded = load_txn_file(dir.path());
  ASSERT_TRUE(loaded.replay_from);
  EXPECT_EQ(*loaded.replay_from, 13) << "producer 2's open transaction";
  ASSERT_EQ(loaded.aborted.size(), 1u);
  EXPECT_EQ(loaded.aborted[0], (AbortedTxn{1, 10, 12}));

  // More later: appended after the first; the header alone waits a second between writes.
  t.on_marker(2, 20, /*commit=*/false, 0);
  t.set_floor(21);
  file->save(t, 500);
  ring.drain();
  loaded = load_txn_file(dir.path());
  ASSERT_EQ(loaded.aborted.size(), 2u);
  EXPECT_EQ(loaded.aborted[1], (AbortedTxn{2, 13, 20}));
  EXPECT_EQ(*loaded.replay_from, 21);
  t.set_floor(30);
  file->save(t, 900);  // only the header is due, and not yet
  ring.drain();
  EXPECT_EQ(*load_txn_file(dir.path()).replay_from, 21);
  file->save(t, 1600);
  ring.drain();
  EXPECT_EQ(*load_txn_file(dir.path()).replay_from, 30);

  // A torn last entry ends the list; a writer made from what was loaded writes over it.
  const auto path = dir.path() / kTxnFileName;
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 5);
  loaded = load_txn_file(dir.path());
  ASSERT_EQ(loaded.aborted.size(), 1u);
  EXPECT_EQ(loaded.entries_in_file, 1u);
  TxnTable again;
  again.restore_aborted(loaded.aborted[0]);
  again.on_data(2, 13);
  again.on_marker(2, 20, false, 0);
  again.on_data(3, 31);
  again.on_marker(3, 33, false, 0);
  again.set_floor(40);
  auto writer = std::make_shared<TxnFile>(dir.path(), ring, loaded);
  writer->save(again, 0);
  ring.drain();
  loaded = load_txn_file(dir.path());
  ASSERT_EQ(loaded.aborted.size(), 3u);
  EXPECT_EQ(loaded.aborted[2], (AbortedTxn{3, 31, 33}));

  // A damaged header: replay everything, keep the entries.
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(9);
    f.put('\x7f');
  }
  loaded = load_txn_file(dir.path());
  EXPECT_EQ(*loaded.replay_from, INT64_MIN);
  EXPECT_EQ(loaded.aborted.size(), 3u);
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The file only appended: a partition whose producers abort now and then grew its txn.state
// by 32 bytes an abort for ever, though the table drops the aborted transactions the log's
// start passed. Now the file is rewritten once most of it is dropped entries.
TEST(TxnFile, IsRewrittenOnceMostOfItIsTransactionsBelowTheLogStart) {
  log::testing::TempDir dir;
  log::IoRing ring;
  const auto path = dir.path() / kTxnFileName;
  TxnTable t;
  auto file = std::make_shared<TxnFile>(dir.path(), ring, TxnFileContents{});
  int64_t offset = 0;
  auto abort_one = [&](int64_t producer) {
    t.on_data(producer, offset);
    t.on_marker(producer, offset + 2, /*commit=*/false, 0);
    offset += 3;
    t.set_floor(offset);
  };
  for (int i = 0; i < 600; ++i) abort_one(i);
  file->save(t, 0);
  ring.drain();
  EXPECT_EQ(std::filesystem::file_size(path), 32u * 601);
  const auto before = load_txn_file(dir.path());
  ASSERT_EQ(before.aborted.size(), 600u);
  const std::string before_bytes = read_file(path);

  // The log's start passes 500 of them: the file holds 600, the table 100.
  t.trim(500 * 3);
  ASSERT_EQ(t.aborted().size(), 100u);
  abort_one(600);
  file->save(t, 2000);
  ring.drain();
  EXPECT_FALSE(file->busy());
  EXPECT_EQ(std::filesystem::file_size(path), 32u * 102);
  auto loaded = load_txn_file(dir.path());
  ASSERT_EQ(loaded.aborted.size(), 101u);
  EXPECT_EQ(loaded.aborted.front(), (AbortedTxn{500, 1500, 1502}));
  EXPECT_EQ(loaded.aborted.back(), (AbortedTxn{600, 1800, 1802}));
  EXPECT_EQ(*loaded.replay_from, offset);
  EXPECT_EQ(loaded.entries_in_file, 101u);

  // Appends go on after the kept ones; a few dropped entries do not rewrite the file.
  t.trim(510 * 3);
  abort_one(601);
  file->save(t, 4000);
  ring.drain();
  loaded = load_txn_file(dir.path());
  ASSERT_EQ(loaded.aborted.size(), 102u);
  EXPECT_EQ(loaded.aborted.back(), (AbortedTxn{601, 1803, 1805}));
  EXPECT_EQ(std::filesystem::file_size(path), 32u * 103);

  // A crash in the middle of the rewrite, after its first header and 30 of the kept entries:
  // the list read back is those 30 (the stale entry after them ends it) and the header
  // replays the log from the first kept transaction, which brings back the others.
  const std::string rewritten = read_file(path);
  std::string guard_header;
  {
    log::testing::TempDir other;
    TxnTable guard;
    guard.restore_aborted(AbortedTxn{0, 0, 1});
    guard.set_floor(1500);  // the first kept transaction's first offset
    auto g = std::make_shared<TxnFile>(other.path(), ring, TxnFileContents{});
    g->save(guard, 0);
    ring.drain();
    guard_header = read_file(other.path() / kTxnFileName).substr(0, 32);
  }
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    const std::string image = guard_header + rewritten.substr(32, 30 * 32) +
                              before_bytes.substr(32 * 31);  // stale: entries 30..599
    out.write(image.data(), static_cast<std::streamsize>(image.size()));
  }
  loaded = load_txn_file(dir.path());
  ASSERT_EQ(loaded.aborted.size(), 30u);
  EXPECT_EQ(loaded.aborted.front(), (AbortedTxn{500, 1500, 1502}));
  EXPECT_EQ(loaded.aborted.back(), (AbortedTxn{529, 1587, 1589}));
  EXPECT_EQ(*loaded.replay_from, 1500) << "the replay covers the kept entries the list lost";
}

TEST(TxnFile, NothingIsWrittenForAPartitionWithoutTransactions) {
  log::testing::TempDir dir;
  log::IoRing ring;
  TxnTable t;
  t.set_floor(100);
  auto file = std::make_shared<TxnFile>(dir.path(), ring, TxnFileContents{});
  file->save(t, 0);
  ring.drain();
  EXPECT_FALSE(std::filesystem::exists(dir.path() / kTxnFileName));
}

}  // namespace
}  // namespace sluice::broker
