#include "bench/baseline.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "common/assert.h"

namespace sluice::bench {
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

Unexpected<Error> sys_error(const std::string& what) {
  return error(errno, what + ": " + std::strerror(errno));
}

std::vector<std::byte> random_bytes(size_t n) {
  std::vector<std::byte> out(n);
  std::mt19937_64 rng(42);
  for (auto& b : out) b = static_cast<std::byte>(rng());
  return out;
}

}  // namespace

Result<BaselineResult> disk_baseline(const DiskBaselineOptions& o) {
  SLUICE_ASSERT(o.write_bytes > 0 && o.bytes > 0);
  const std::string path = o.dir + "/sluice-bench-baseline.bin";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return sys_error("open " + path);
  const auto buffer = random_bytes(static_cast<size_t>(o.write_bytes));
  BaselineResult r;
  int64_t unsynced = 0;
  const auto start = std::chrono::steady_clock::now();
  while (r.bytes < o.bytes) {
    const size_t n = static_cast<size_t>(std::min(o.write_bytes, o.bytes - r.bytes));
    const ssize_t w = ::write(fd, buffer.data(), n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      auto e = sys_error("write " + path);
      ::close(fd);
      ::unlink(path.c_str());
      return e;
    }
    r.bytes += w;
    unsynced += w;
    if ((o.sync_bytes > 0 && unsynced >= o.sync_bytes) || r.bytes >= o.bytes) {
      if (::fdatasync(fd) != 0) {
        auto e = sys_error("fdatasync " + path);
        ::close(fd);
        ::unlink(path.c_str());
        return e;
      }
      ++r.syncs;
      unsynced = 0;
    }
  }
  r.seconds = seconds_since(start);
  ::close(fd);
  ::unlink(path.c_str());
  return r;
}

Result<BaselineResult> tcp_baseline(const TcpBaselineOptions& o) {
  SLUICE_ASSERT(o.write_bytes > 0 && o.bytes > 0);
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener < 0) return sys_error("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listener, 1) != 0 ||
      ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    auto e = sys_error("listen on loopback");
    ::close(listener);
    return e;
  }
  int64_t received = 0;
  std::thread receiver([&] {
    const int fd = ::accept(listener, nullptr, nullptr);
    if (fd < 0) return;
    std::vector<std::byte> buffer(1 << 20);
    for (;;) {
      const ssize_t n = ::recv(fd, buffer.data(), buffer.size(), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      received += n;
    }
    ::close(fd);
  });
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  BaselineResult r;
  const auto buffer = random_bytes(static_cast<size_t>(o.write_bytes));
  const auto start = std::chrono::steady_clock::now();
  bool ok = fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  while (ok && r.bytes < o.bytes) {
    const size_t n = static_cast<size_t>(std::min(o.write_bytes, o.bytes - r.bytes));
    const ssize_t w = ::send(fd, buffer.data(), n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    ok = w > 0;
    if (ok) r.bytes += w;
  }
  const int saved_errno = errno;
  if (fd >= 0) {
    ::shutdown(fd, SHUT_WR);
  } else {
    ::shutdown(listener, SHUT_RDWR);  // wakes accept()
  }
  receiver.join();
  r.seconds = seconds_since(start);  // until the receiver has read everything
  if (fd >= 0) ::close(fd);
  ::close(listener);
  if (!ok) {
    errno = saved_errno;
    return sys_error("loopback send");
  }
  SLUICE_ASSERT(received == r.bytes);
  return r;
}

}  // namespace sluice::bench
