#include "broker/data_dir.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>

namespace sluice::broker {
namespace {

std::string errno_text(int err) { return std::strerror(err); }

bool all_digits(std::string_view s) {
  if (s.empty() || s.size() > 9) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

bool all_hex(std::string_view s) {
  for (char c : s) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return !s.empty();
}

}  // namespace

Result<DataDirLock> DataDirLock::acquire(const std::string& data_dir) {
  std::error_code ec;
  std::filesystem::create_directories(data_dir, ec);
  if (ec) return error(2, "cannot create data directory '" + data_dir + "': " + ec.message());
  const std::string path = data_dir + "/.lock";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return error(2, "cannot open " + path + ": " + errno_text(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char holder[32] = {};
    const ssize_t n = ::pread(fd, holder, sizeof(holder) - 1, 0);
    ::close(fd);
    if (err == EWOULDBLOCK) {
      std::string pid = n > 0 ? std::string(holder, static_cast<size_t>(n)) : "";
      while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
      return error(2, "data directory '" + data_dir + "' is in use by another sluiced" +
                          (pid.empty() ? "" : " (pid " + pid + ")") +
                          " holding " + path + "; two brokers must never share a directory");
    }
    return error(2, "cannot lock " + path + ": " + errno_text(err));
  }
  // The holder's pid, for the message above (informational; the flock is what counts).
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    spdlog::warn("could not write the pid into {}: {}", path, errno_text(errno));
  }
  return DataDirLock(fd);
}

DataDirLock& DataDirLock::operator=(DataDirLock&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.fd_;
    o.fd_ = -1;
  }
  return *this;
}

DataDirLock::~DataDirLock() {
  if (fd_ >= 0) ::close(fd_);
}

std::optional<PartitionDirName> parse_partition_dir(std::string_view name) {
  const auto dash = name.rfind('-');
  if (dash == std::string_view::npos || dash == 0) return std::nullopt;
  const std::string_view digits = name.substr(dash + 1);
  if (!all_digits(digits)) return std::nullopt;
  return PartitionDirName{std::string(name.substr(0, dash)), std::stoi(std::string(digits))};
}

Result<std::vector<DataDirEntry>> scan_data_dir(const std::string& data_dir) {
  std::vector<DataDirEntry> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(data_dir, ec)) {
    if (!entry.is_directory(ec)) continue;
    const std::string name = entry.path().filename().string();
    DataDirEntry e;
    e.name = name;
    std::string_view base = name;
    for (auto [suffix, kind] : {std::pair{std::string_view("-delete"), DirKind::kTombstone},
                                std::pair{std::string_view("-orphan"), DirKind::kOrphan}}) {
      if (!base.ends_with(suffix)) continue;
      const std::string_view rest = base.substr(0, base.size() - suffix.size());
      const auto dot = rest.rfind('.');
      if (dot == std::string_view::npos) continue;
      const std::string_view tag = rest.substr(dot + 1);
      if (!all_hex(tag)) continue;
      e.kind = kind;
      e.tag = std::string(tag);
      base = rest.substr(0, dot);
      break;
    }
    auto p = parse_partition_dir(base);
    if (!p) continue;
    e.partition = std::move(*p);
    out.push_back(std::move(e));
  }
  if (ec) return error(2, "cannot list '" + data_dir + "': " + ec.message());
  std::sort(out.begin(), out.end(),
            [](const DataDirEntry& a, const DataDirEntry& b) { return a.name < b.name; });
  return out;
}

std::string hex_id(const std::array<uint8_t, 16>& id) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (uint8_t b : id) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

std::string tombstone_name(const PartitionDirName& p, const std::array<uint8_t, 16>& topic_id) {
  return p.topic + "-" + std::to_string(p.partition) + "." + hex_id(topic_id) + "-delete";
}

Status fsync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return error(2, "cannot open directory " + dir + ": " + errno_text(errno));
  const bool ok = ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  if (!ok) return error(2, "cannot fsync directory " + dir + ": " + errno_text(err));
  return {};
}

Status rename_durably(const std::string& data_dir, const std::string& from, const std::string& to) {
  const std::string a = data_dir + "/" + from;
  const std::string b = data_dir + "/" + to;
  if (::rename(a.c_str(), b.c_str()) != 0) {
    return error(2, "cannot rename " + a + " to " + b + ": " + errno_text(errno));
  }
  return fsync_dir(data_dir);
}

Result<int> set_aside_leftovers(const std::string& data_dir, const std::string& topic,
                                int32_t first, int32_t last) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  int moved = 0;
  for (int32_t i = first; i < last; ++i) {
    const std::string name = topic + "-" + std::to_string(i);
    std::error_code ec;
    if (!std::filesystem::exists(data_dir + "/" + name, ec)) continue;
    const std::string aside = name + "." + std::to_string(ms) + "-orphan";
    spdlog::warn(
        "{}: left over from an earlier topic '{}' that no metadata owns; moved aside to {} "
        "(not served; removed by --sweep-orphans)",
        name, topic, aside);
    if (auto r = rename_durably(data_dir, name, aside); !r) return unexpected(r.error());
    ++moved;
  }
  return moved;
}

void crash_point(const char* name) {
  static const char* wanted = std::getenv("SLUICE_CRASH_POINT");
  if (wanted == nullptr || std::strcmp(wanted, name) != 0) return;
  spdlog::warn("crash point '{}': SIGKILL", name);
  spdlog::default_logger()->flush();
  ::kill(::getpid(), SIGKILL);
}

}  // namespace sluice::broker
