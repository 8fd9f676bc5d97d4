// File handles shared by reference count, and a per-shard cache of read-only handles with a
// limit, so that the number of open files stays bounded however many segments exist; and the
// shard's budget for its logs' cold-read caches, so that their memory stays bounded too.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>

#include "log/errc.h"

namespace sluice::log {

// Owns one file descriptor; closes it when the last reference goes. A FileRange handed to
// the broker holds one, so a segment deleted or evicted meanwhile stays readable.
class FileHandle {
 public:
  explicit FileHandle(int fd) : fd_(fd) {}
  ~FileHandle();
  FileHandle(const FileHandle&) = delete;
  FileHandle& operator=(const FileHandle&) = delete;
  int fd() const { return fd_; }

  // open(2) with O_CLOEXEC added; an errno error names the path.
  static LogResult<std::shared_ptr<FileHandle>> open(const std::string& path, int flags,
                                                     int mode = 0644);

 private:
  int fd_;
};

// Something that keeps descriptors open while in use (a partition's active segment and its
// directory and partition.meta, a Raft replica's files) and can close them when idle,
// reopening them on its next use.
class FdHolder {
 public:
  virtual ~FdHolder() = default;
  // Closes this holder's descriptors unless something in flight needs them; true if it did.
  // Called by the FdCache only, which then forgets the holder until its next touch().
  virtual bool release_fds() = 0;
};

// Something that keeps a cache of file bytes in memory (a partition's cold-read cache: index
// entries, a time index, pieces of .log files) and can drop it at any time: what it dropped is
// read again when next wanted.
class ColdHolder {
 public:
  virtual ~ColdHolder() = default;
  // Drops the cache. Called by the ColdBudget only; the holder charges 0 in it (or nothing).
  virtual void drop_cold() = 0;
};

// The bytes a shard's cold-read caches hold in all, within a limit: each holder charges what
// its cache holds after every change (charge()), becoming the most recently used; while the
// total is over the limit, the least recently used other holders drop theirs. One holder alone
// may stay over it (each cache has its own caps: a few MiB). So however many partitions are
// read from old offsets at once, their caches stay within the shard's share (issue 18: a cache
// per partition with no shard-wide bound, found by a review). Used on the shard's thread only.
class ColdBudget {
 public:
  explicit ColdBudget(uint64_t limit = UINT64_MAX) : limit_(limit) {}
  ~ColdBudget();
  ColdBudget(const ColdBudget&) = delete;
  ColdBudget& operator=(const ColdBudget&) = delete;

  // `holder` holds `bytes` now (0: nothing; it is forgotten until it charges again).
  void charge(ColdHolder* holder, uint64_t bytes);
  // The holder is going away (whatever it held is no longer counted).
  void forget(ColdHolder* holder) { charge(holder, 0); }
  void set_limit(uint64_t limit);
  uint64_t limit() const { return limit_; }
  uint64_t held() const { return held_; }
  size_t holders() const { return index_.size(); }
  uint64_t drops() const { return drops_; }  // caches dropped to keep within the limit

 private:
  struct Entry {
    ColdHolder* holder;
    uint64_t bytes;
  };
  uint64_t limit_;
  uint64_t held_ = 0;
  uint64_t drops_ = 0;
  std::list<Entry> lru_;  // front: most recently charged
  std::unordered_map<ColdHolder*, std::list<Entry>::iterator> index_;
  // Drops least recently used holders other than `keep` until within the limit.
  void shrink(const ColdHolder* keep);
};

// Least-recently-used cache of read-only handles, keyed by path, and the caps on holders:
// at most `holders_max` FdHolders keep their descriptors while idle (the least recently used
// idle ones release theirs when another is used), and at most `busy_max` at all, busy ones
// included: a holder about to open its descriptors asks room_for() first and, when there is
// none, waits (wait_for_room) until others release theirs. So however many partitions a shard
// has and however many of them write at once (every Raft group persisting its election at
// start-up), the shard's descriptors stay within its share of the open-files limit. Owned by
// a shard and used only on its thread (not thread-safe). Evicting drops the cache's reference only: readers that hold the handle (a
// FileRange a response still sends) keep it open.
class FdCache {
 public:
  explicit FdCache(size_t capacity = 1024, size_t holders_max = 256);
  ~FdCache();
  FdCache(const FdCache&) = delete;
  FdCache& operator=(const FdCache&) = delete;

  // A holder is (about to be) using its descriptors: it becomes the most recently used; if
  // more than holders_max hold descriptors, up to kReleaseTries of the least recently used
  // others are asked to release theirs (busy ones stay, for trim() to retry).
  void touch(FdHolder* holder);
  // The holder released its descriptors itself, or is going away.
  void drop(FdHolder* holder);
  // Asks idle holders beyond holders_max to release (call now and then); returns how many did.
  size_t trim();
  void set_holders_max(size_t n) { holders_max_ = n < 1 ? 1 : n; }
  size_t holders() const { return holders_.size(); }
  size_t holders_max() const { return holders_max_; }
  uint64_t releases() const { return releases_; }
  static constexpr size_t kReleaseTries = 8;

  // The hard cap (unlimited unless set; at least 2: one partition's log and replica).
  void set_busy_max(size_t n) { busy_max_ = n < 2 ? 2 : n; }
  size_t busy_max() const { return busy_max_; }
  // True if `n` holders that hold nothing now may open their descriptors (idle holders are
  // asked to release theirs to make room, beyond holders_max or not).
  bool room_for(size_t n);
  // Runs `wake` once there may be room (after holders released theirs: trim(), release(),
  // drop()); it runs inside those calls, so it should only post the waiter's work, which then
  // asks room_for() again. Waiters wake in the order they came.
  void wait_for_room(std::function<void()> wake);
  size_t waiting() const { return waiters_.size(); }
  uint64_t room_waits() const { return room_waits_; }
  // A holder finished its work: if others wait for room, it releases its descriptors now
  // (when it can) instead of at the next trim().
  void release(FdHolder* holder);

  LogResult<std::shared_ptr<FileHandle>> open(const std::string& path);
  // The cached handle of `path` (made the most recently used), or null: never opens.
  std::shared_ptr<FileHandle> find(const std::string& path);
  // Keeps `handle`, open on `path`, as the cached handle for reads of it: a segment that was
  // just closed hands over its read-write handle, so that the Fetches that follow it do not
  // open the file again on the shard.
  void adopt(const std::string& path, std::shared_ptr<FileHandle> handle);
  // Drops the entry for `path` (after the file was deleted or replaced).
  void forget(const std::string& path);

  // The shard's cold-read caches' budget (unlimited unless set): the logs using this cache
  // charge theirs there.
  ColdBudget& cold_budget() { return cold_budget_; }

  size_t size() const { return entries_.size(); }
  size_t capacity() const { return capacity_; }
  uint64_t opens() const { return opens_; }
  uint64_t hits() const { return hits_; }
  uint64_t evictions() const { return evictions_; }

 private:
  struct Entry {
    std::string path;
    std::shared_ptr<FileHandle> handle;
  };
  size_t capacity_;
  std::list<Entry> lru_;  // front: most recently used
  std::unordered_map<std::string, std::list<Entry>::iterator> entries_;
  uint64_t opens_ = 0;
  uint64_t hits_ = 0;
  uint64_t evictions_ = 0;
  size_t holders_max_;
  std::list<FdHolder*> holders_lru_;  // front: most recently used
  std::unordered_map<FdHolder*, std::list<FdHolder*>::iterator> holders_;
  uint64_t releases_ = 0;
  size_t busy_max_ = SIZE_MAX;
  std::deque<std::function<void()>> waiters_;
  uint64_t room_waits_ = 0;
  // Asks holders from the least recently used end, skipping `keep`, to release their
  // descriptors until at most `target` remain or `tries` (at most all of them) were asked;
  // a busy one becomes the most recently used (it is in use), so the next call asks others.
  size_t release_down_to(size_t target, const FdHolder* keep, size_t tries);
  // Wakes waiters for the room there is.
  void wake_waiters();
  ColdBudget cold_budget_;
};

}  // namespace sluice::log
