#include "log/fd_cache.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <iterator>

#include "common/assert.h"

namespace sluice::log {

FileHandle::~FileHandle() {
  if (fd_ >= 0) ::close(fd_);
}

LogResult<std::shared_ptr<FileHandle>> FileHandle::open(const std::string& path, int flags,
                                                        int mode) {
  int fd;
  do {
    fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return errno_error(errno, "open " + path);
  return std::make_shared<FileHandle>(fd);
}

FdCache::FdCache(size_t capacity, size_t holders_max)
    : capacity_(capacity), holders_max_(holders_max < 1 ? 1 : holders_max) {
  SLUICE_ASSERT(capacity_ >= 1);
}

ColdBudget::~ColdBudget() { SLUICE_DASSERT(index_.empty()); }

void ColdBudget::charge(ColdHolder* holder, uint64_t bytes) {
  auto it = index_.find(holder);
  if (it != index_.end()) {
    held_ -= it->second->bytes;
    if (bytes == 0) {
      lru_.erase(it->second);
      index_.erase(it);
      return;
    }
    it->second->bytes = bytes;
    lru_.splice(lru_.begin(), lru_, it->second);
  } else {
    if (bytes == 0) return;
    lru_.push_front({holder, bytes});
    index_.emplace(holder, lru_.begin());
  }
  held_ += bytes;
  shrink(holder);
}

void ColdBudget::set_limit(uint64_t limit) {
  limit_ = limit;
  shrink(nullptr);
}

void ColdBudget::shrink(const ColdHolder* keep) {
  while (held_ > limit_ && !lru_.empty()) {
    Entry victim = lru_.back();
    if (victim.holder == keep) {
      if (lru_.size() == 1) return;  // alone over the limit: its own caps bound it
      lru_.splice(lru_.begin(), lru_, std::prev(lru_.end()));
      continue;
    }
    // Forgotten first: the holder's own charge(0) from drop_cold() then finds nothing.
    held_ -= victim.bytes;
    index_.erase(victim.holder);
    lru_.pop_back();
    ++drops_;
    victim.holder->drop_cold();
  }
}

// Holders unregister themselves (drop()) when destroyed; one still here is a bug.
FdCache::~FdCache() { SLUICE_DASSERT(holders_.empty()); }

void FdCache::touch(FdHolder* holder) {
  if (auto it = holders_.find(holder); it != holders_.end()) {
    holders_lru_.splice(holders_lru_.begin(), holders_lru_, it->second);
    return;
  }
  holders_lru_.push_front(holder);
  holders_.emplace(holder, holders_lru_.begin());
  if (holders_.size() > holders_max_) release_down_to(holders_max_, holder, kReleaseTries);
}

void FdCache::drop(FdHolder* holder) {
  if (auto it = holders_.find(holder); it != holders_.end()) {
    holders_lru_.erase(it->second);
    holders_.erase(it);
    wake_waiters();
  }
}

size_t FdCache::trim() {
  const size_t released = release_down_to(holders_max_, nullptr, holders_.size());
  wake_waiters();
  return released;
}

bool FdCache::room_for(size_t n) {
  if (holders_.size() + n <= busy_max_) return true;
  if (n > busy_max_) return false;
  // Room for n: idle holders give theirs back, the cap on idle ones notwithstanding.
  release_down_to(busy_max_ - n, nullptr, holders_.size());
  return holders_.size() + n <= busy_max_;
}

void FdCache::wait_for_room(std::function<void()> wake) {
  ++room_waits_;
  waiters_.push_back(std::move(wake));
}

void FdCache::release(FdHolder* holder) {
  if (waiters_.empty()) return;
  auto it = holders_.find(holder);
  if (it == holders_.end() || !holder->release_fds()) return;
  holders_lru_.erase(it->second);
  holders_.erase(it);
  ++releases_;
  wake_waiters();
}

void FdCache::wake_waiters() {
  // Each waiter needs at most two holders (a partition's log and its replica); it asks
  // room_for() again when its posted work runs, and waits again if others took the room.
  if (waiters_.empty()) return;
  if (holders_.size() + 2 > busy_max_) release_down_to(busy_max_ - 2, nullptr, holders_.size());
  size_t room = holders_.size() < busy_max_ ? (busy_max_ - holders_.size()) / 2 : 0;
  while (room > 0 && !waiters_.empty()) {
    auto wake = std::move(waiters_.front());
    waiters_.pop_front();
    --room;
    wake();
  }
}

size_t FdCache::release_down_to(size_t target, const FdHolder* keep, size_t tries) {
  size_t released = 0;
  tries = std::min(tries, holders_lru_.size());
  while (holders_.size() > target && tries > 0) {
    --tries;
    FdHolder* h = holders_lru_.back();
    if (h != keep && h->release_fds()) {
      holders_.erase(h);
      holders_lru_.pop_back();
      ++released;
      ++releases_;
      continue;
    }
    // Busy (or the one being touched): in use, so the most recently used.
    holders_lru_.splice(holders_lru_.begin(), holders_lru_, std::prev(holders_lru_.end()));
  }
  SLUICE_DASSERT(holders_.size() == holders_lru_.size());
  return released;
}

LogResult<std::shared_ptr<FileHandle>> FdCache::open(const std::string& path) {
  if (auto it = entries_.find(path); it != entries_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second);
    ++hits_;
    return it->second->handle;
  }
  auto handle = FileHandle::open(path, O_RDONLY);
  if (!handle) return unexpected(std::move(handle).error());
  ++opens_;
  while (entries_.size() >= capacity_) {
    entries_.erase(lru_.back().path);
    lru_.pop_back();
    ++evictions_;
  }
  lru_.push_front(Entry{path, *handle});
  entries_.emplace(path, lru_.begin());
  SLUICE_DASSERT(entries_.size() == lru_.size());
  SLUICE_ASSERT(entries_.size() <= capacity_);
  return *handle;
}

std::shared_ptr<FileHandle> FdCache::find(const std::string& path) {
  auto it = entries_.find(path);
  if (it == entries_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second);
  ++hits_;
  return it->second->handle;
}

void FdCache::adopt(const std::string& path, std::shared_ptr<FileHandle> handle) {
  forget(path);
  if (capacity_ == 0 || handle == nullptr) return;
  while (entries_.size() >= capacity_) {
    entries_.erase(lru_.back().path);
    lru_.pop_back();
    ++evictions_;
  }
  lru_.push_front(Entry{path, std::move(handle)});
  entries_.emplace(path, lru_.begin());
  SLUICE_DASSERT(entries_.size() == lru_.size());
}

void FdCache::forget(const std::string& path) {
  if (auto it = entries_.find(path); it != entries_.end()) {
    lru_.erase(it->second);
    entries_.erase(it);
  }
}

}  // namespace sluice::log
