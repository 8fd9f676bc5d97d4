#include "common/durable_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace sluice {

namespace {

Unexpected<Error> sys_error(const std::string& what) {
  const int e = errno;
  return error(e, what + ": " + std::strerror(e));
}

}  // namespace

Status sync_directory(const std::string& dir) {
  const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return sys_error("cannot open directory " + dir);
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return sys_error("cannot fsync directory " + dir);
  return {};
}

namespace {

// Writes `contents` to `tmp` (created or truncated) and fsyncs it.
Status write_synced(const std::string& tmp, std::string_view contents) {
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return sys_error("cannot create " + tmp);
  size_t done = 0;
  while (done < contents.size()) {
    const ssize_t n = ::write(fd, contents.data() + done, contents.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      auto e = sys_error("cannot write " + tmp);
      ::close(fd);
      return e;
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    auto e = sys_error("cannot fsync " + tmp);
    ::close(fd);
    return e;
  }
  ::close(fd);
  return {};
}

}  // namespace

Status write_file_durably(const std::string& path, std::string_view contents) {
  const std::string tmp = path + ".tmp";
  if (auto s = write_synced(tmp, contents); !s) return s;
  if (::rename(tmp.c_str(), path.c_str()) != 0) return sys_error("cannot rename " + tmp);
  return sync_directory(std::filesystem::path(path).parent_path().string());
}

Status write_files_durably(const std::string& dir,
                           const std::vector<std::pair<std::string, std::string_view>>& files) {
  for (const auto& [name, contents] : files) {
    if (auto s = write_synced(dir + "/" + name + ".tmp", contents); !s) return s;
  }
  for (const auto& [name, contents] : files) {
    const std::string path = dir + "/" + name;
    if (::rename((path + ".tmp").c_str(), path.c_str()) != 0) {
      return sys_error("cannot rename " + path + ".tmp");
    }
  }
  return sync_directory(dir);
}

Result<std::string> read_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return sys_error("cannot open " + path);
  std::string out;
  char buf[65536];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      auto e = sys_error("cannot read " + path);
      ::close(fd);
      return e;
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

}  // namespace sluice
