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

FdCache::FdCache(size_t capacity) : capacity_(capacity) { SLUICE_ASSERT(capacity_ >= 1); }

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
