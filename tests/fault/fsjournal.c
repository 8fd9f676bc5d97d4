// fsjournal: an LD_PRELOAD shim that makes "power loss" testable. For every file under
// $SLUICE_FSJ_ROOT it journals, before each change, the bytes and size the change destroys,
// and at each fsync/fdatasync it notes that the file's earlier changes are durable. After the
// process is SIGKILLed, tests/fault/fsjournal.py rolls every file back to its state at its last
// sync: what a machine losing power would have kept (page cache lost, synced data kept).
//
// Seen by the shim: write, pwrite(64), pwritev(64), ftruncate(64), fallocate(64), open/openat
// with O_TRUNC, fsync, fdatasync. io_uring writes bypass libc, so sluiced must run with
// SLUICE_DISABLE_IO_URING=1 (its pwrite/fdatasync fallback). Not modelled: directory entries
// (create, rename, unlink are treated as durable at once) and mmap writes (sluiced maps only
// read-only). The journal ($SLUICE_FSJ_JOURNAL) is written with plain write(2): it survives a
// SIGKILL of the process (it is in the page cache), which is all the harness needs.
//
// Record: kind:u8 seq:u64 offset:u64 len:u64 old_size:i64 zero:u8 path_len:u32, path, then the
// old bytes (len of them unless zero=1, meaning they were all zeros).
//   'W' a write at offset of len bytes; old bytes of [offset, min(offset+len, old_size)).
//   'T' the size changes to offset (ftruncate, fallocate, O_TRUNC); old bytes of
//       [offset, old_size) when it shrinks.
//   'S' fsync/fdatasync of path began when the sequence was at seq: every change before it is
//       durable.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int jfd = -2;  // -2: not opened yet; -1: disabled
static uint64_t seq;
static char root[PATH_MAX];
static size_t root_len;

struct __attribute__((packed)) header {
  uint8_t kind;
  uint64_t seq;
  uint64_t offset;
  uint64_t len;
  int64_t old_size;
  uint8_t zero;
  uint32_t path_len;
};

static void raw_write_all(int fd, const void* p, size_t n) {
  const char* c = p;
  while (n > 0) {
    long w = syscall(SYS_write, fd, c, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) abort();  // a journal we cannot write makes the test meaningless
    c += w;
    n -= (size_t)w;
  }
}

static void ensure_open(void) {  // under mu
  if (jfd != -2) return;
  const char* j = getenv("SLUICE_FSJ_JOURNAL");
  const char* r = getenv("SLUICE_FSJ_ROOT");
  if (!j || !r || !realpath(r, root)) {
    jfd = -1;
    return;
  }
  root_len = strlen(root);
  jfd = (int)syscall(SYS_openat, AT_FDCWD, j, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (jfd < 0) abort();
}

static int under_root(const char* path) {
  return strncmp(path, root, root_len) == 0 && (path[root_len] == '/' || path[root_len] == 0);
}

static int fd_path(int fd, char* out) {  // 1 when fd is a regular file under root
  char link[64];
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, out, PATH_MAX - 1);
  if (n <= 0) return 0;
  out[n] = 0;
  return under_root(out);
}

static int all_zero(const char* b, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (b[i]) return 0;
  return 1;
}

// Journals the bytes [from, to) of fd (clipped to its size) as a record of this kind.
static void journal(uint8_t kind, const char* path, int fd, uint64_t offset, uint64_t len,
                    int64_t old_size, uint64_t keep_from, uint64_t keep_to) {
  struct header h = {kind, seq++, offset, 0, old_size, 0, (uint32_t)strlen(path)};
  char* old = NULL;
  if (keep_to > (uint64_t)old_size) keep_to = (uint64_t)old_size;
  if (keep_to > keep_from) {
    h.len = keep_to - keep_from;
    old = malloc(h.len);
    if (!old) abort();
    uint64_t got = 0;
    while (got < h.len) {
      ssize_t r = pread(fd, old + got, h.len - got, (off_t)(keep_from + got));
      if (r <= 0) break;
      got += (uint64_t)r;
    }
    if (got < h.len) memset(old + got, 0, h.len - got);
    h.zero = all_zero(old, h.len);
  }
  (void)len;
  raw_write_all(jfd, &h, sizeof h);
  raw_write_all(jfd, path, h.path_len);
  if (h.len && !h.zero) raw_write_all(jfd, old, h.len);
  free(old);
}

static void before_write(int fd, uint64_t offset, uint64_t n) {
  char path[PATH_MAX];
  pthread_mutex_lock(&mu);
  ensure_open();
  if (jfd >= 0 && n > 0 && fd_path(fd, path)) {
    struct stat st;
    if (fstat(fd, &st) == 0) journal('W', path, fd, offset, n, st.st_size, offset, offset + n);
  }
  pthread_mutex_unlock(&mu);
}

static void before_resize(int fd, uint64_t new_size) {
  char path[PATH_MAX];
  pthread_mutex_lock(&mu);
  ensure_open();
  if (jfd >= 0 && fd_path(fd, path)) {
    struct stat st;
    if (fstat(fd, &st) == 0 && (uint64_t)st.st_size != new_size)
      journal('T', path, fd, new_size, 0, st.st_size, new_size, (uint64_t)st.st_size);
  }
  pthread_mutex_unlock(&mu);
}

static uint64_t sync_begin(int fd, char* path) {  // returns the sequence, path "" if not ours
  uint64_t s = 0;
  path[0] = 0;
  pthread_mutex_lock(&mu);
  ensure_open();
  if (jfd >= 0 && fd_path(fd, path)) s = seq;
  else path[0] = 0;
  pthread_mutex_unlock(&mu);
  return s;
}

static void sync_end(const char* path, uint64_t s, int rc) {
  if (!path[0] || rc != 0) return;
  pthread_mutex_lock(&mu);
  struct header h = {'S', s, 0, 0, 0, 0, (uint32_t)strlen(path)};
  raw_write_all(jfd, &h, sizeof h);
  raw_write_all(jfd, path, h.path_len);
  pthread_mutex_unlock(&mu);
}

#define REAL(name) static __typeof__(name)* real_##name; \
  if (!real_##name) real_##name = (__typeof__(name)*)dlsym(RTLD_NEXT, #name)

ssize_t write(int fd, const void* buf, size_t n) {
  REAL(write);
  if (fd > 2) {
    off_t pos = lseek(fd, 0, SEEK_CUR);
    if (pos >= 0) before_write(fd, (uint64_t)pos, n);
  }
  return real_write(fd, buf, n);
}

ssize_t pwrite(int fd, const void* buf, size_t n, off_t off) {
  REAL(pwrite);
  before_write(fd, (uint64_t)off, n);
  return real_pwrite(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void* buf, size_t n, off64_t off) {
  REAL(pwrite64);
  before_write(fd, (uint64_t)off, n);
  return real_pwrite64(fd, buf, n, off);
}

static size_t iov_len(const struct iovec* iov, int cnt) {
  size_t n = 0;
  for (int i = 0; i < cnt; ++i) n += iov[i].iov_len;
  return n;
}

ssize_t pwritev(int fd, const struct iovec* iov, int cnt, off_t off) {
  REAL(pwritev);
  before_write(fd, (uint64_t)off, iov_len(iov, cnt));
  return real_pwritev(fd, iov, cnt, off);
}

ssize_t pwritev64(int fd, const struct iovec* iov, int cnt, off64_t off) {
  REAL(pwritev64);
  before_write(fd, (uint64_t)off, iov_len(iov, cnt));
  return real_pwritev64(fd, iov, cnt, off);
}

int ftruncate(int fd, off_t len) {
  REAL(ftruncate);
  before_resize(fd, (uint64_t)len);
  return real_ftruncate(fd, len);
}

int ftruncate64(int fd, off64_t len) {
  REAL(ftruncate64);
  before_resize(fd, (uint64_t)len);
  return real_ftruncate64(fd, len);
}

static void before_fallocate(int fd, int mode, uint64_t off, uint64_t len) {
  struct stat st;
  if (mode == 0 && fstat(fd, &st) == 0 && off + len > (uint64_t)st.st_size)
    before_resize(fd, off + len);
}

int fallocate(int fd, int mode, off_t off, off_t len) {
  REAL(fallocate);
  before_fallocate(fd, mode, (uint64_t)off, (uint64_t)len);
  return real_fallocate(fd, mode, off, len);
}

int fallocate64(int fd, int mode, off64_t off, off64_t len) {
  REAL(fallocate64);
  before_fallocate(fd, mode, (uint64_t)off, (uint64_t)len);
  return real_fallocate64(fd, mode, off, len);
}

static void before_open(int dirfd, const char* path, int flags) {
  if (!(flags & O_TRUNC) || !(flags & (O_WRONLY | O_RDWR))) return;
  int fd = (int)syscall(SYS_openat, dirfd, path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  before_resize(fd, 0);
  close(fd);
}

#define OPEN_MODE                       \
  mode_t mode = 0;                      \
  if (flags & (O_CREAT | O_TMPFILE)) {  \
    va_list ap;                         \
    va_start(ap, flags);                \
    mode = va_arg(ap, mode_t);          \
    va_end(ap);                         \
  }

int open(const char* path, int flags, ...) {
  REAL(open);
  OPEN_MODE
  before_open(AT_FDCWD, path, flags);
  return real_open(path, flags, mode);
}

int open64(const char* path, int flags, ...) {
  REAL(open64);
  OPEN_MODE
  before_open(AT_FDCWD, path, flags);
  return real_open64(path, flags, mode);
}

int openat(int dirfd, const char* path, int flags, ...) {
  REAL(openat);
  OPEN_MODE
  before_open(dirfd, path, flags);
  return real_openat(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char* path, int flags, ...) {
  REAL(openat64);
  OPEN_MODE
  before_open(dirfd, path, flags);
  return real_openat64(dirfd, path, flags, mode);
}

static int synced(int fd, int (*real)(int)) {
  char path[PATH_MAX];
  uint64_t s = sync_begin(fd, path);
  int rc = real(fd);
  sync_end(path, s, rc);
  return rc;
}

int fsync(int fd) {
  REAL(fsync);
  return synced(fd, real_fsync);
}

int fdatasync(int fd) {
  REAL(fdatasync);
  return synced(fd, real_fdatasync);
}
