// A partition's transactions kept across restarts (broker/README.md "Transactions"): the
// stable aborted transactions, which a read_committed Fetch of old data needs and which the
// log's tail no longer shows, and the offset from which start-up must replay the log to find
// every transaction that may still be open (its first unstable offset when last saved).
//
// The file `txn.state` in the partition's folder: a 32-byte header (magic "SLTX", version 1,
// the replay offset, a CRC-32C of the header) then 32-byte entries (producer id, first offset,
// last offset, a CRC-32C of the entry). Written through the partition's shard's io_uring ring,
// one save at a time: new entries are appended and synced before the header that relies on
// them is rewritten and synced, so after a crash the header never promises more than the
// entries hold. A torn or damaged entry ends the list (the replay from the header's offset
// brings back what was lost of the recent ones); a damaged header replays the whole log.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <vector>

#include "broker/txn_state.h"

namespace sluice::log {
class IoRing;
class FileHandle;
}  // namespace sluice::log

namespace sluice::broker {

inline constexpr const char* kTxnFileName = "txn.state";

struct TxnFileContents {
  // Replay the log from here (INT64_MIN: from its start); nullopt when there is no file (the
  // partition never had a transaction: the usual tail replay is enough).
  std::optional<int64_t> replay_from;
  std::vector<AbortedTxn> aborted;  // in marker order
  size_t entries_in_file = 0;       // where the next entry goes (a torn tail is written over)
};

// Reads what an earlier run saved (blocking: at the partition's opening, beside the log's own
// recovery).
TxnFileContents load_txn_file(const std::filesystem::path& dir);

class TxnFile : public std::enable_shared_from_this<TxnFile> {
 public:
  TxnFile(const std::filesystem::path& dir, log::IoRing& ring, const TxnFileContents& loaded);

  // Writes what `table` has that the file lacks, unless a save is in flight (the next call
  // takes it: until then the file's older replay offset still covers it): the aborted
  // transactions that became stable since, and the replay offset (its header alone at most
  // once per second, `now_ms` a steady clock). Nothing for a table that never saw a
  // transaction. Once most of the file's entries are ones the table dropped (below the log's
  // start), the file is rewritten in place with the table's: it does not grow without bound.
  void save(const TxnTable& table, int64_t now_ms);
  bool busy() const { return writing_; }

 private:
  void rewrite(const TxnTable& table, int64_t now_ms);
  void write_header(int64_t replay_from);
  void failed(const char* what, int32_t res);

  std::string path_;
  log::IoRing& ring_;
  std::shared_ptr<log::FileHandle> file_;
  size_t entries_;                    // entries in the file (the next goes after them)
  int64_t saved_last_ = INT64_MIN;    // the last aborted transaction's marker in the file
  int64_t saved_replay_ = INT64_MIN;  // the replay offset in the file's header
  int64_t header_ms_ = INT64_MIN;     // when the header was last written
  bool writing_ = false;
  bool broken_ = false;  // a write failed: stop writing (start-up replays more of the log)
};

}  // namespace sluice::broker
