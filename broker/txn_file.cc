#include "broker/txn_file.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <fstream>

#include "common/bytes.h"
#include "log/fd_cache.h"
#include "log/io_ring.h"
#include "protocol/crc32c.h"

namespace sluice::broker {

namespace {

constexpr size_t kRecordBytes = 32;
constexpr uint32_t kMagic = 0x534C5458;  // "SLTX"
constexpr uint32_t kVersion = 1;
// The file is rewritten once it holds at least this many entries the table dropped (and at
// least as many as it still has): its size stays within twice what is kept, plus 8 KiB.
constexpr size_t kRewriteDeadMin = 256;

using Record = std::array<std::byte, kRecordBytes>;

Record encode_header(int64_t replay_from) {
  Record r{};
  store_be<uint32_t>(r.data(), kMagic);
  store_be<uint32_t>(r.data() + 4, kVersion);
  store_be<int64_t>(r.data() + 8, replay_from);
  store_be<uint32_t>(r.data() + 28, kafka::crc32c(Bytes(r.data(), 28)));
  return r;
}

Record encode_entry(const AbortedTxn& t) {
  Record r{};
  store_be<int64_t>(r.data(), t.producer_id);
  store_be<int64_t>(r.data() + 8, t.first_offset);
  store_be<int64_t>(r.data() + 16, t.last_offset);
  store_be<uint32_t>(r.data() + 28, kafka::crc32c(Bytes(r.data(), 28)));
  return r;
}

bool crc_ok(const std::byte* r) { return load_be<uint32_t>(r + 28) == kafka::crc32c(Bytes(r, 28)); }

}  // namespace

TxnFileContents load_txn_file(const std::filesystem::path& dir) {
  TxnFileContents out;
  std::ifstream in(dir / kTxnFileName, std::ios::binary);
  if (!in) return out;  // no file: no transaction ever reached this partition
  Record header{};
  in.read(reinterpret_cast<char*>(header.data()), kRecordBytes);
  const bool header_ok = in.gcount() == kRecordBytes && crc_ok(header.data()) &&
                         load_be<uint32_t>(header.data()) == kMagic &&
                         load_be<uint32_t>(header.data() + 4) == kVersion;
  if (!header_ok) {
    spdlog::warn("{}: damaged header: the whole log is replayed for its transactions",
                 (dir / kTxnFileName).string());
    out.replay_from = INT64_MIN;
  } else {
    out.replay_from = load_be<int64_t>(header.data() + 8);
  }
  Record r{};
  while (in.read(reinterpret_cast<char*>(r.data()), kRecordBytes) && in.gcount() == kRecordBytes &&
         crc_ok(r.data())) {
    const AbortedTxn t{load_be<int64_t>(r.data()), load_be<int64_t>(r.data() + 8),
                       load_be<int64_t>(r.data() + 16)};
    if (!out.aborted.empty() && t.last_offset <= out.aborted.back().last_offset) break;
    out.aborted.push_back(t);
  }
  // A torn or damaged entry ends the list; the next save writes over it.
  out.entries_in_file = out.aborted.size();
  return out;
}

TxnFile::TxnFile(const std::filesystem::path& dir, log::IoRing& ring, const TxnFileContents& loaded)
    : path_((dir / kTxnFileName).string()), ring_(ring), entries_(loaded.entries_in_file) {
  if (!loaded.aborted.empty()) saved_last_ = loaded.aborted.back().last_offset;
  if (loaded.replay_from) saved_replay_ = *loaded.replay_from;
}

void TxnFile::failed(const char* what, int32_t res) {
  writing_ = false;
  broken_ = true;
  spdlog::error(
      "{}: {} failed ({}): transactions are no longer saved; a restart replays the "
      "log from the last saved offset",
      path_, what, std::strerror(-res));
}

void TxnFile::save(const TxnTable& table, int64_t now_ms) {
  if (writing_ || broken_ || !table.seen_any()) return;
  const auto& aborted = table.aborted();
  auto it = std::upper_bound(aborted.begin(), aborted.end(), saved_last_,
                             [](int64_t at, const AbortedTxn& t) { return at < t.last_offset; });
  // Entries of the file the table no longer has (the log's start passed them): once they are
  // at least half the file, the file is rewritten with what the table has.
  const size_t live = static_cast<size_t>(it - aborted.begin());
  if (file_ && entries_ >= live + std::max(kRewriteDeadMin, live)) return rewrite(table, now_ms);
  std::vector<AbortedTxn> fresh(it, aborted.end());
  const int64_t replay = table.replay_from();
  const bool header_due =
      replay != saved_replay_ && (header_ms_ == INT64_MIN || now_ms - header_ms_ >= 1000);
  if (fresh.empty() && !header_due && file_) return;
  writing_ = true;
  auto self = shared_from_this();
  auto write = [self, fresh = std::move(fresh), replay, now_ms]() {
    if (fresh.empty()) {
      self->header_ms_ = now_ms;
      return self->write_header(replay);
    }
    auto bytes = std::make_shared<std::vector<std::byte>>();
    for (const AbortedTxn& t : fresh) {
      const Record r = encode_entry(t);
      bytes->insert(bytes->end(), r.begin(), r.end());
    }
    const uint64_t at = kRecordBytes * (1 + self->entries_);
    std::vector<log::IoRing::ChainedWrite> writes;
    writes.push_back({Bytes(bytes->data(), bytes->size()), at, [](int32_t) {}});
    const size_t count = fresh.size();
    const int64_t last = fresh.back().last_offset;
    self->ring_.write_then_fdatasync(self->file_->fd(), std::move(writes),
                                     [self, bytes, count, last, replay, now_ms](int32_t res) {
                                       if (res < 0) return self->failed("append", res);
                                       self->entries_ += count;
                                       self->saved_last_ = last;
                                       // The entries are durable: the header may now promise them.
                                       self->header_ms_ = now_ms;
                                       self->write_header(replay);
                                     });
    self->ring_.submit();
  };
  if (file_) return write();
  // Created on the first save; its folder is synced before anything relies on the file.
  ring_.open(path_, O_RDWR | O_CREAT, 0644, [self, write](int32_t fd) {
    if (fd < 0) return self->failed("open", fd);
    self->file_ = std::make_shared<log::FileHandle>(fd);
    const std::string dir = std::filesystem::path(self->path_).parent_path().string();
    self->ring_.open(dir, O_RDONLY | O_DIRECTORY, 0, [self, write](int32_t dir_fd) {
      if (dir_fd < 0) return self->failed("open the folder of", dir_fd);
      auto folder = std::make_shared<log::FileHandle>(dir_fd);
      self->ring_.fsync(folder->fd(), [self, folder, write](int32_t res) {
        if (res < 0) return self->failed("sync the folder of", res);
        write();
      });
      self->ring_.submit();
    });
    self->ring_.submit();
  });
  ring_.submit();
}

// In place, in an order that a crash at any point leaves readable: (1) the header's replay
// offset goes back to the first kept transaction's first offset, so that a list cut short by
// the crash is made whole by replaying the log (which still holds every kept transaction:
// they are above its start); (2) the kept entries from the first slot on, synced: a crash
// midway leaves new entries then stale ones, and a stale entry's last offset is below the
// new one before it, which ends the list (load_txn_file); (3) the file cut after them; (4)
// the header's own replay offset.
void TxnFile::rewrite(const TxnTable& table, int64_t now_ms) {
  writing_ = true;
  const auto& aborted = table.aborted();
  auto bytes = std::make_shared<std::vector<std::byte>>();
  bytes->reserve(aborted.size() * kRecordBytes);
  for (const AbortedTxn& t : aborted) {
    const Record r = encode_entry(t);
    bytes->insert(bytes->end(), r.begin(), r.end());
  }
  const size_t count = aborted.size();
  const int64_t last = count ? aborted.back().last_offset : saved_last_;
  const int64_t replay = table.replay_from();
  const int64_t guard = count ? std::min(replay, aborted.front().first_offset) : replay;
  auto guard_header = std::make_shared<Record>(encode_header(guard));
  auto self = shared_from_this();
  std::vector<log::IoRing::ChainedWrite> first;
  first.push_back({Bytes(guard_header->data(), guard_header->size()), 0, [](int32_t) {}});
  ring_.write_then_fdatasync(file_->fd(), std::move(first), [=](int32_t res) {
    if (res < 0) return self->failed("header write", res);
    self->saved_replay_ = guard;
    auto then_cut = [=](int32_t res2) {
      if (res2 < 0) return self->failed("rewrite", res2);
      self->entries_ = count;
      self->saved_last_ = last;
      self->ring_.ftruncate(self->file_->fd(), kRecordBytes * (1 + count), [=](int32_t res3) {
        if (res3 < 0) return self->failed("truncate", res3);
        self->header_ms_ = now_ms;
        self->write_header(replay);  // synced with the cut
      });
      self->ring_.submit();
    };
    if (count == 0) return then_cut(0);
    std::vector<log::IoRing::ChainedWrite> entries;
    entries.push_back({Bytes(bytes->data(), bytes->size()), kRecordBytes, [](int32_t) {}});
    self->ring_.write_then_fdatasync(self->file_->fd(), std::move(entries),
                                     [bytes, then_cut](int32_t res2) { then_cut(res2); });
    self->ring_.submit();
  });
  ring_.submit();
}

void TxnFile::write_header(int64_t replay_from) {
  auto header = std::make_shared<Record>(encode_header(replay_from));
  auto self = shared_from_this();
  std::vector<log::IoRing::ChainedWrite> writes;
  writes.push_back({Bytes(header->data(), header->size()), 0, [](int32_t) {}});
  ring_.write_then_fdatasync(file_->fd(), std::move(writes),
                             [self, header, replay_from](int32_t res) {
                               if (res < 0) return self->failed("header write", res);
                               self->saved_replay_ = replay_from;
                               self->writing_ = false;
                             });
  ring_.submit();
}

}  // namespace sluice::broker
