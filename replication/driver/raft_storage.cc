#include "replication/driver/raft_storage.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "common/bytes.h"
#include "common/durable_file.h"
#include "protocol/crc32c.h"

namespace sluice::raft {

namespace {

using kafka::crc32c;

constexpr size_t kEntryHeader = 4 + 4 + 8 + 8 + 1;  // length, crc, index, term, type
constexpr uint32_t kEntryMax = 256u << 20;
constexpr uint32_t kFileMagic = 0x534c5246;  // "SLRF": snapshot and hard state files

Unexpected<Error> sys_error(const std::string& what) {
  const int e = errno;
  return error(e, what + ": " + std::strerror(e));
}

void put_u32(std::string& out, uint32_t v) {
  std::byte b[4];
  store_be(b, v);
  out.append(reinterpret_cast<const char*>(b), 4);
}
void put_u64(std::string& out, uint64_t v) {
  std::byte b[8];
  store_be(b, v);
  out.append(reinterpret_cast<const char*>(b), 8);
}

// A bounded reader over a file's bytes; every get fails cleanly past the end.
struct Cursor {
  std::string_view s;
  size_t pos = 0;
  bool ok = true;
  template <class T>
  T get() {
    if (!ok || s.size() - pos < sizeof(T)) {
      ok = false;
      return T{};
    }
    T v = load_be<T>(reinterpret_cast<const std::byte*>(s.data() + pos));
    pos += sizeof(T);
    return v;
  }
  std::string_view take(size_t n) {
    if (!ok || s.size() - pos < n) {
      ok = false;
      return {};
    }
    auto v = s.substr(pos, n);
    pos += n;
    return v;
  }
};

// Files with a checksum: magic | crc32c(body) | body.
std::string seal(const std::string& body) {
  std::string out;
  put_u32(out, kFileMagic);
  put_u32(out, crc32c(as_bytes(body)));
  out += body;
  return out;
}
Result<std::string_view> unseal(std::string_view file, const std::string& path) {
  Cursor c{file};
  const uint32_t magic = c.get<uint32_t>();
  const uint32_t crc = c.get<uint32_t>();
  if (!c.ok || magic != kFileMagic) return error(EINVAL, path + ": not a Raft state file");
  std::string_view body = file.substr(8);
  if (crc32c(as_bytes(body)) != crc) return error(EINVAL, path + ": checksum mismatch");
  return body;
}

void put_conf(std::string& out, const ConfState& conf) {
  Payload p = encode_conf_state(conf);
  put_u32(out, static_cast<uint32_t>(p.size()));
  out.append(p.text());
}

}  // namespace

FileRaftStorage::~FileRaftStorage() {
  if (log_fd_ >= 0) ::close(log_fd_);
}

bool FileRaftStorage::exists(const std::string& dir) {
  std::error_code ec;
  return std::filesystem::exists(dir + "/hardstate", ec) ||
         std::filesystem::exists(dir + "/snapshot", ec);
}

Result<RestoredState> FileRaftStorage::load() {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) return error(ec.value(), "cannot create " + dir_ + ": " + ec.message());
  RestoredState restored;
  // Snapshot.
  if (auto file = read_file(dir_ + "/snapshot"); file) {
    auto body = unseal(*file, dir_ + "/snapshot");
    if (!body) return unexpected(std::move(body).error());
    Cursor c{*body};
    restored.snapshot.index = LogIndex(c.get<uint64_t>());
    restored.snapshot.term = Term(c.get<uint64_t>());
    const uint32_t conf_len = c.get<uint32_t>();
    auto conf = decode_conf_state(as_bytes(c.take(conf_len)));
    const uint32_t data_len = c.get<uint32_t>();
    auto data = c.take(data_len);
    if (!c.ok || !conf) return error(EINVAL, dir_ + "/snapshot: malformed");
    restored.snapshot.conf = *conf;
    restored.snapshot.data = Payload::copy_of(data);
  } else if (file.error().code != ENOENT) {
    return unexpected(std::move(file).error());
  }
  snapshot_ = restored.snapshot;
  // Hard state.
  if (auto file = read_file(dir_ + "/hardstate"); file) {
    auto body = unseal(*file, dir_ + "/hardstate");
    if (!body) return unexpected(std::move(body).error());
    Cursor c{*body};
    restored.hard_state.term = Term(c.get<uint64_t>());
    restored.hard_state.vote = NodeId(static_cast<int32_t>(c.get<uint32_t>()));
    restored.hard_state.commit = LogIndex(c.get<uint64_t>());
    if (!c.ok) return error(EINVAL, dir_ + "/hardstate: malformed");
  } else if (file.error().code != ENOENT) {
    return unexpected(std::move(file).error());
  }
  hard_state_ = restored.hard_state;
  // Log: entries after the snapshot, cut at the first torn or corrupt one.
  auto file = read_file(dir_ + "/log");
  std::string bytes;
  if (file) {
    bytes = std::move(*file);
  } else if (file.error().code != ENOENT) {
    return unexpected(std::move(file).error());
  }
  first_index_ = *restored.snapshot.index + 1;
  positions_.clear();
  size_t pos = 0;
  uint64_t expect = first_index_;
  while (true) {
    Cursor c{std::string_view(bytes).substr(pos)};
    const uint32_t len = c.get<uint32_t>();
    const uint32_t crc = c.get<uint32_t>();
    if (!c.ok || len < kEntryHeader - 8 || len > kEntryMax) break;
    std::string_view rest = c.take(len);
    if (!c.ok || crc32c(as_bytes(rest)) != crc) break;
    Cursor e{rest};
    const uint64_t index = e.get<uint64_t>();
    const uint64_t term = e.get<uint64_t>();
    const uint8_t type = e.get<uint8_t>();
    if (type > static_cast<uint8_t>(EntryType::kConfig)) break;
    if (index < expect) {  // entries a snapshot already covers (compaction was interrupted)
      pos += 8 + len;
      continue;
    }
    if (index != expect) break;
    if (positions_.empty()) first_index_ = index;
    positions_.push_back(pos);
    restored.entries.push_back(Entry{LogIndex(index), Term(term), static_cast<EntryType>(type),
                                     Payload::copy_of(rest.substr(17))});
    ++expect;
    pos += 8 + len;
  }
  truncated_ = bytes.size() - pos;
  // Skipped entries before the snapshot stay in the file until the next rewrite: forget them.
  if (!positions_.empty() && first_index_ != *restored.snapshot.index + 1) {
    positions_.clear();
    restored.entries.clear();
  }
  log_size_ = pos;
  if (auto s = open_log(); !s) return unexpected(std::move(s).error());
  if (truncated_ > 0 && ::ftruncate(log_fd_, static_cast<off_t>(pos)) != 0) {
    return sys_error("cannot truncate " + dir_ + "/log");
  }
  first_index_ = *restored.snapshot.index + 1;
  if (!restored.entries.empty()) first_index_ = *restored.entries.front().index;
  // The commit index is written lazily, so it may lag the log; a log that ends before it has
  // lost committed entries (an emptied or replaced file). Refuse rather than forget them.
  const uint64_t last =
      restored.entries.empty() ? *restored.snapshot.index : *restored.entries.back().index;
  if (*restored.hard_state.commit > last) {
    return error(EINVAL, dir_ + "/log ends at entry " + std::to_string(last) +
                             " but entries up to " + std::to_string(*restored.hard_state.commit) +
                             " were committed: committed entries are lost");
  }
  restored.applied = restored.snapshot.index;
  if (*restored.hard_state.commit < *restored.snapshot.index) {
    restored.hard_state.commit = restored.snapshot.index;
  }
  return restored;
}

Status FileRaftStorage::open_log() {
  if (log_fd_ >= 0) return {};
  const std::string path = dir_ + "/log";
  const bool fresh = !std::filesystem::exists(path);
  log_fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (log_fd_ < 0) return sys_error("cannot open " + path);
  if (fresh) return sync_directory(dir_);
  return {};
}

Status FileRaftStorage::write_snapshot(const Snapshot& snapshot) {
  std::string body;
  put_u64(body, *snapshot.index);
  put_u64(body, *snapshot.term);
  put_conf(body, snapshot.conf);
  put_u32(body, static_cast<uint32_t>(snapshot.data.size()));
  body.append(snapshot.data.text());
  if (auto s = write_file_durably(dir_ + "/snapshot", seal(body)); !s) return s;
  snapshot_ = snapshot;
  return {};
}

Status FileRaftStorage::write_hard_state(const HardState& hs) {
  std::string body;
  put_u64(body, *hs.term);
  put_u32(body, static_cast<uint32_t>(*hs.vote));
  put_u64(body, *hs.commit);
  if (auto s = write_file_durably(dir_ + "/hardstate", seal(body)); !s) return s;
  hard_state_ = hs;
  return {};
}

Status FileRaftStorage::append(const std::vector<Entry>& entries) {
  if (entries.empty()) return {};
  // The file format has no width: it stores one-index entries only (the controller's).
  for (const Entry& e : entries) {
    if (e.width != 1) return error(EINVAL, "FileRaftStorage stores entries of width 1 only");
  }
  const uint64_t first = *entries.front().index;
  // An entry at index i replaces the stored entry at i and everything after it.
  if (first < first_index_ + positions_.size()) {
    if (first < first_index_) return error(EINVAL, "append before the log start");
    const size_t keep = first - first_index_;
    const uint64_t cut = keep < positions_.size() ? positions_[keep] : log_size_;
    positions_.resize(keep);
    if (::ftruncate(log_fd_, static_cast<off_t>(cut)) != 0) {
      return sys_error("cannot truncate " + dir_ + "/log");
    }
    log_size_ = cut;
  } else if (first != first_index_ + positions_.size()) {
    // A gap: only possible right after a snapshot replaced the log.
    if (!positions_.empty()) return error(EINVAL, "append leaves a gap in the log");
    first_index_ = first;
  }
  std::string out;
  std::vector<uint64_t> starts;
  for (const Entry& e : entries) {
    starts.push_back(log_size_ + out.size());
    std::string rest;
    put_u64(rest, *e.index);
    put_u64(rest, *e.term);
    rest.push_back(static_cast<char>(e.type));
    rest.append(e.data.text());
    put_u32(out, static_cast<uint32_t>(rest.size()));
    put_u32(out, crc32c(as_bytes(rest)));
    out += rest;
  }
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::pwrite(log_fd_, out.data() + done, out.size() - done,
                               static_cast<off_t>(log_size_ + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return sys_error("cannot write " + dir_ + "/log");
    done += static_cast<size_t>(n);
  }
  log_size_ += out.size();
  positions_.insert(positions_.end(), starts.begin(), starts.end());
  return {};
}

Status FileRaftStorage::sync_log() {
  if (::fdatasync(log_fd_) != 0) return sys_error("cannot fdatasync " + dir_ + "/log");
  return {};
}

Status FileRaftStorage::persist(const Ready& ready) {
  if (ready.snapshot) {
    // The snapshot replaces the whole log: entries it covers go, the rest are dropped too
    // (a follower installing a snapshot discards its log).
    if (auto s = write_snapshot(*ready.snapshot); !s) return s;
    positions_.clear();
    first_index_ = *ready.snapshot->index + 1;
    if (::ftruncate(log_fd_, 0) != 0) return sys_error("cannot truncate " + dir_ + "/log");
    log_size_ = 0;
  }
  if (auto s = append(ready.entries); !s) return s;
  if (ready.must_sync || !ready.entries.empty()) {
    if (auto s = sync_log(); !s) return s;
  }
  if (ready.hard_state) {
    // A commit-only change needs no fsync, but the file is replaced whole anyway; skip it
    // unless term or vote changed, or it is cheap enough to keep the commit index fresh.
    const bool durable_change = ready.hard_state->term != hard_state_.term ||
                                ready.hard_state->vote != hard_state_.vote;
    if (durable_change || *ready.hard_state->commit >= *hard_state_.commit + 64) {
      if (auto s = write_hard_state(*ready.hard_state); !s) return s;
    } else {
      hard_state_.commit = ready.hard_state->commit;  // written with the next change
    }
  }
  return {};
}

Status FileRaftStorage::compact(const Snapshot& snapshot) {
  if (*snapshot.index <= *snapshot_.index) return {};
  if (auto s = write_snapshot(snapshot); !s) return s;
  return rewrite_log(*snapshot.index);
}

Status FileRaftStorage::rewrite_log(uint64_t after_index) {
  // Copy the entries after `after_index` to a new file and rename it over the log. A crash
  // before the rename leaves the old log, whose covered entries load() skips.
  const std::string path = dir_ + "/log";
  uint64_t from = log_size_;
  size_t keep_from = positions_.size();
  if (after_index + 1 >= first_index_ && after_index + 1 - first_index_ < positions_.size()) {
    keep_from = after_index + 1 - first_index_;
    from = positions_[keep_from];
  }
  std::string rest(log_size_ - from, '\0');
  size_t done = 0;
  while (done < rest.size()) {
    const ssize_t n = ::pread(log_fd_, rest.data() + done, rest.size() - done,
                              static_cast<off_t>(from + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return sys_error("cannot read " + path);
    done += static_cast<size_t>(n);
  }
  if (auto s = write_file_durably(path, rest); !s) return s;
  ::close(log_fd_);
  log_fd_ = -1;
  std::vector<uint64_t> positions;
  for (size_t i = keep_from; i < positions_.size(); ++i) positions.push_back(positions_[i] - from);
  positions_ = std::move(positions);
  first_index_ = after_index + 1;
  log_size_ = rest.size();
  return open_log();
}

}  // namespace sluice::raft
