// File handles shared by reference count, and a per-shard cache of read-only handles with a
// limit, so that the number of open files stays bounded however many segments exist.
#pragma once

#include <cstdint>
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

// Least-recently-used cache of read-only handles, keyed by path. Owned by a shard and used
// only on its thread (not thread-safe). Evicting drops the cache's reference only: readers
// that hold the handle keep it open.
class FdCache {
 public:
  explicit FdCache(size_t capacity = 1024);

  LogResult<std::shared_ptr<FileHandle>> open(const std::string& path);
  // Drops the entry for `path` (after the file was deleted or replaced).
  void forget(const std::string& path);

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
};

}  // namespace sluice::log
