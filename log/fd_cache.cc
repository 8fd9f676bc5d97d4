#include "log/fd_cache.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

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

// Holders unregister themselves (drop()) when destroyed; one still here is a bug.
FdCache::~FdCache() { SLUICE_DASSERT(holders_.empty()); }

void FdCache::touch(FdHolder* holder) {
  if (auto it = holders_.find(holder); it != holders_.end()) {
    holders_lru_.splice(holders_lru_.begin(), holders_lru_, it->second);
    return;
  }
  holders_lru_.push_front(holder);
  holders_.emplace(holder, holders_lru_.begin());
  if (holders_.size() > holders_max_) release_beyond_cap(holder, kReleaseTries);
}

void FdCache::drop(FdHolder* holder) {
  if (auto it = holders_.find(holder); it != holders_.end()) {
    holders_lru_.erase(it->second);
    holders_.erase(it);
  }
}

size_t FdCache::trim() { return release_beyond_cap(nullptr, holders_.size()); }

size_t FdCache::release_beyond_cap(const FdHolder* keep, size_t tries) {
  size_t released = 0;
  auto it = holders_lru_.end();
  while (holders_.size() > holders_max_ && tries > 0 && it != holders_lru_.begin()) {
    --it;
    FdHolder* h = *it;
    if (h == keep) continue;
    --tries;
    if (!h->release_fds()) continue;
    holders_.erase(h);
    it = holders_lru_.erase(it);
    ++released;
    ++releases_;
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

void FdCache::forget(const std::string& path) {
  if (auto it = entries_.find(path); it != entries_.end()) {
    lru_.erase(it->second);
    entries_.erase(it);
  }
}

}  // namespace sluice::log
