#include "broker/replica.h"

#include "broker/sync_pacer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/assert.h"
#include "common/durable_file.h"
#include "common/random.h"
#include "common/bytes.h"
#include "common/clock.h"
#include "protocol/crc32c.h"
#include "protocol/record_batch.h"

namespace sluice::broker {

namespace asio = boost::asio;
using kafka::ErrorCode;

namespace {

constexpr uint32_t kSlotMagic = 0x534c5253;  // "SLRS"
constexpr size_t kSlotBytes = 256;
constexpr size_t kSlotFixed = 4 + 4 + 8 * 7 + 4;  // magic, crc, 7 u64 fields, conf length
constexpr size_t kInternalHeader = 4 + 4 + 8 + 8 + 1 + 8;
constexpr uint32_t kInternalMax = 1 << 20;

template <class T>
void put(std::string& out, T v) {
  char b[sizeof(T)];
  store_be<T>(reinterpret_cast<std::byte*>(b), v);
  out.append(b, sizeof(T));
}
template <class T>
T get(const char* p) {
  return load_be<T>(reinterpret_cast<const std::byte*>(p));
}

Status sys_error(const std::string& what) {
  return error(errno, what + ": " + std::strerror(errno));
}

}  // namespace

uint64_t partition_group_id(const std::array<uint8_t, 16>& topic_id, int32_t partition) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a over the topic id
  for (uint8_t b : topic_id) {
    h ^= b;
    h *= 1099511628211ULL;
  }
  // The low 24 bits are the partition (Kafka allows far fewer per topic); bit 63 keeps it
  // away from 0, the controller.
  return (h << 24) | (1ULL << 63) | (static_cast<uint64_t>(partition) & 0xffffff);
}

Replica::Replica(log::PartitionLog& log, log::IoRing& ring, asio::io_context& io,
                 ReplicaOptions options, ReplicaEvents events)
    : log_(log), ring_(ring), io_(io), options_(std::move(options)), events_(std::move(events)) {}

Replica::~Replica() {
  *alive_ = false;
  abandon_waiters(ErrorCode::kNotLeaderOrFollower);
  log_.fd_cache().drop(this);
  close_fds();
}

void Replica::close_fds() {
  if (state_fd_ >= 0) ::close(state_fd_);
  if (internal_fd_ >= 0) ::close(internal_fd_);
  state_fd_ = internal_fd_ = -1;
}

bool Replica::open_fds() {
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (state_fd_ < 0) state_fd_ = ::open((dir_ + "/raft.state").c_str(), O_RDWR | O_CLOEXEC);
    if (state_fd_ >= 0 && internal_fd_ < 0) {
      internal_fd_ =
          ::open((dir_ + "/raft.internal").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    }
    if (state_fd_ >= 0 && internal_fd_ >= 0) {
      log_.fd_cache().touch(this);
      return true;
    }
    // At the descriptor limit, idle holders beyond the cap give theirs back first.
    if ((errno != EMFILE && errno != ENFILE) || log_.fd_cache().trim() == 0) break;
  }
  return false;
}

void Replica::open_fds_through_ring(std::function<void(int32_t)> then) {
  struct Opening {
    int pending = 1;  // the log's
    int32_t error = 0;
    std::function<void(int32_t)> then;
  };
  auto st = std::make_shared<Opening>();
  st->then = std::move(then);
  // Completions may run after the replica is gone (alive says so): they close what they opened.
  auto one_done = [this, &io = io_, alive = alive_, st](int32_t res) {
    if (res < 0 && st->error == 0) st->error = res;
    if (--st->pending > 0) return;
    if (*alive && st->error != 0) {
      persisting_ = false;
      log_.keep_fds(false);
    }
    asio::post(io, [alive, st] {
      if (*alive) st->then(st->error);
    });
  };
  // Counted as holders from now on (FdCache::room_for of other partitions sees them while the
  // opens are in flight) and kept until finish(): the Ready writes next.
  persisting_ = true;
  log_.keep_fds(true);
  if (!fds_open()) log_.fd_cache().touch(this);
  if (!log_.holds_fds()) log_.fd_cache().touch(&log_);
  auto open_one = [&](int* fd, const std::string& path, int flags) {
    if (*fd >= 0) return;
    ++st->pending;
    ring_.open(path, flags, 0644, [fd, alive = alive_, one_done](int32_t res) {
      if (res >= 0 && (!*alive || *fd >= 0)) {
        ::close(res);  // gone, or opened meanwhile
      } else if (res >= 0) {
        *fd = res;
      }
      one_done(res < 0 ? res : 0);
    });
  };
  open_one(&state_fd_, dir_ + "/raft.state", O_RDWR);
  open_one(&internal_fd_, dir_ + "/raft.internal", O_RDWR | O_CREAT);
  log_.reopen_fds_async(one_done);
  ring_.submit();
}

bool Replica::release_fds() {
  if (persisting_ || slot_writes_ > 0) return false;
  close_fds();
  return true;
}

Result<std::unique_ptr<Replica>> Replica::open(const std::string& dir, log::PartitionLog& log,
                                               log::IoRing& ring, asio::io_context& io,
                                               ReplicaOptions options, ReplicaEvents events) {
  std::unique_ptr<Replica> r(new Replica(log, ring, io, std::move(options), std::move(events)));
  const bool exists = ::access((dir + "/raft.state").c_str(), F_OK) == 0;
  if (auto s = exists ? r->load(dir) : r->create(dir); !s) return unexpected(s.error());
  raft::Config rc = r->options_.raft;
  rc.id = raft::NodeId(r->options_.self);
  rc.seed = random_u64() ^ r->options_.group;
  rc.ballot_key = r->options_.group;  // the same on every replica: spreads election turns
  r->node_ = std::make_unique<raft::Node>(rc, r->restored_state(), r.get());
  r->last_term_ = *r->node_->term();
  r->refresh_voters();
  const raft::ConfState conf = r->node_->status().conf;
  r->mirrored_last_ = std::max(r->mirrored_last_, *r->node_->status().last_index);
  // A replica alone in its group leads at once; the preferred replica of a new group
  // campaigns without waiting for an election timeout.
  if (conf.voters.size() == 1 && conf.is_voter(rc.id)) {
    r->node_->campaign();
  } else if (!exists && !r->options_.initial_voters.empty() &&
             r->options_.initial_voters.front() == r->options_.self) {
    r->node_->campaign();
  }
  r->after_role_change();
  r->schedule();
  return r;
}

// ---- files ----

std::string Replica::encode_slot(const StateSlot& s) const {
  // The configuration in effect at the log start.
  const raft::Payload c = raft::encode_conf_state(snap_conf_);
  std::string body;
  put<uint64_t>(body, s.generation);
  put<uint64_t>(body, s.term);
  put<int64_t>(body, s.vote);
  put<uint64_t>(body, s.snap_index);
  put<uint64_t>(body, s.snap_term);
  put<int64_t>(body, s.internal_before);
  put<uint64_t>(body, s.commit);
  put<uint32_t>(body, static_cast<uint32_t>(c.size()));
  body.append(c.text());
  std::string out;
  put<uint32_t>(out, kSlotMagic);
  put<uint32_t>(out, kafka::crc32c(as_bytes(std::string_view(body))));
  out += body;
  out.resize(kSlotBytes, '\0');
  return out;
}

std::string Replica::encode_internal(const Internal& e) const {
  std::string body;
  put<uint64_t>(body, e.index);
  put<uint64_t>(body, e.term);
  put<uint8_t>(body, static_cast<uint8_t>(e.type));
  put<int64_t>(body, e.kafka_pos);
  body.append(e.data.text());
  std::string out;
  put<uint32_t>(out, static_cast<uint32_t>(body.size()));
  put<uint32_t>(out, kafka::crc32c(as_bytes(std::string_view(body))));
  return out + body;
}

Status Replica::create(const std::string& dir) {
  // Everything already in the log (a partition from before replication) counts as a
  // snapshot: the group starts after it, with its configuration entry.
  const int64_t kend = *log_.log_end_offset();
  snap_index_ = static_cast<uint64_t>(kend);
  snap_term_ = 0;
  xlate_ = log::OffsetTranslator(kend, 0);
  raft::ConfState conf;
  for (int32_t v : options_.initial_voters) conf.voters.push_back(raft::NodeId(v));
  std::sort(conf.voters.begin(), conf.voters.end());
  if (conf.voters.empty()) {
    // Joining a running group (a move brought the replica here, or it is rebuilt after its
    // files were lost): no configuration and no entries of its own. The leader sends it the
    // log, or the log start, with the configuration in it; until then it never campaigns.
    state_ = StateSlot{.generation = 1,
                       .term = 0,
                       .vote = -1,
                       .snap_index = snap_index_,
                       .snap_term = 0,
                       .internal_before = 0,
                       .commit = snap_index_};
    std::string slots = encode_slot(state_);
    slots += std::string(kSlotBytes, '\0');
    // raft.state last: its presence says the replica exists (open()).
    if (auto s = write_files_durably(dir, {{"raft.internal", ""}, {"raft.state", slots}}); !s) {
      return s;
    }
    return load(dir);
  }
  Internal boot{.index = snap_index_ + 1,
                .term = 1,
                .type = raft::EntryType::kConfig,
                .kafka_pos = kend,
                .data = raft::encode_conf_state(conf)};
  state_ = StateSlot{.generation = 1,
                     .term = 1,
                     .vote = -1,
                     .snap_index = snap_index_,
                     .snap_term = 0,
                     .internal_before = 0,
                     .commit = boot.index};
  const std::string rec = encode_internal(boot);
  std::string slots = encode_slot(state_);
  slots += std::string(kSlotBytes, '\0');
  if (auto s = write_files_durably(dir, {{"raft.internal", rec}, {"raft.state", slots}}); !s) {
    return s;
  }
  return load(dir);
}

Status Replica::load(const std::string& dir) {
  dir_ = dir;
  if (!open_fds()) {
    return sys_error("cannot open " + dir + (state_fd_ < 0 ? "/raft.state" : "/raft.internal"));
  }
  // The newest whole slot.
  char buf[kSlotBytes * 2];
  const ssize_t n = ::pread(state_fd_, buf, sizeof buf, 0);
  if (n < 0) return sys_error("cannot read " + dir + "/raft.state");
  bool found = false;
  for (size_t slot = 0; slot < 2; ++slot) {
    if (static_cast<size_t>(n) < (slot + 1) * kSlotBytes) break;
    const char* p = buf + slot * kSlotBytes;
    if (get<uint32_t>(p) != kSlotMagic) continue;
    const uint32_t conf_len = get<uint32_t>(p + kSlotFixed - 4);
    if (conf_len > kSlotBytes - kSlotFixed) continue;
    const std::string_view body(p + 8, kSlotFixed - 8 + conf_len);
    if (kafka::crc32c(as_bytes(body)) != get<uint32_t>(p + 4)) continue;
    StateSlot s{.generation = get<uint64_t>(p + 8),
                .term = get<uint64_t>(p + 16),
                .vote = get<int64_t>(p + 24),
                .snap_index = get<uint64_t>(p + 32),
                .snap_term = get<uint64_t>(p + 40),
                .internal_before = get<int64_t>(p + 48),
                .commit = get<uint64_t>(p + 56)};
    auto conf = raft::decode_conf_state(as_bytes(std::string_view(p + kSlotFixed, conf_len)));
    if (!conf) continue;
    if (!found || s.generation > state_.generation) {
      state_ = s;
      snap_conf_ = *conf;
      found = true;
    }
  }
  if (!found) {
    return error(5, dir + "/raft.state has no valid copy of the replica's term and vote; "
                          "the replica cannot take part safely (move the partition "
                          "directory away to rebuild it from its peers)");
  }
  snap_index_ = state_.snap_index;
  snap_term_ = state_.snap_term;
  xlate_ = log::OffsetTranslator(static_cast<int64_t>(snap_index_), state_.internal_before);
  // Raft's own entries, up to a torn or corrupt tail, and only those whose data before them
  // is in the log.
  std::string text;
  {
    auto r = read_file(dir + "/raft.internal");
    if (!r) return unexpected(r.error());
    text = std::move(*r);
  }
  const int64_t kend = *log_.log_end_offset();
  uint64_t pos = 0;
  uint64_t expect = snap_index_ + 1;
  int64_t internal_before = state_.internal_before;
  while (pos + kInternalHeader <= text.size()) {
    const char* p = text.data() + pos;
    const uint32_t len = get<uint32_t>(p);
    if (len < kInternalHeader - 8 || len > kInternalMax || pos + 8 + len > text.size()) break;
    const std::string_view body(p + 8, len);
    if (kafka::crc32c(as_bytes(body)) != get<uint32_t>(p + 4)) break;
    Internal e{.index = get<uint64_t>(p + 8),
               .term = get<uint64_t>(p + 16),
               .type = static_cast<raft::EntryType>(get<uint8_t>(p + 24)),
               .kafka_pos = get<int64_t>(p + 25),
               .data = raft::Payload::copy_of(body.substr(kInternalHeader - 8)),
               .file_pos = pos};
    if (e.kafka_pos > kend) break;  // the data before it was lost: so is it
    if (e.index > snap_index_) {
      // Its index follows from the data and internal records before it.
      const uint64_t want = static_cast<uint64_t>(e.kafka_pos + internal_before) + 1;
      if (e.index != want || e.index < expect) {
        return error(5, dir + "/raft.internal: entry " + std::to_string(e.index) +
                            " does not fit the log (expected index " + std::to_string(want) +
                            "); the replica's state is damaged");
      }
      xlate_.add_internal(static_cast<int64_t>(e.index) - 1, 1);
      expect = e.index + 1;
      ++internal_before;
    } else {
      pre_snapshot_.push_back({e.index, e.term});
    }
    if (e.index > snap_index_) internal_.push_back(std::move(e));
    pos += 8 + len;
  }
  if (pos < text.size()) {
    spdlog::warn("{}: raft.internal: {} bytes after the last whole entry cut", dir,
                 text.size() - pos);
    if (::ftruncate(internal_fd_, static_cast<off_t>(pos)) != 0 || ::fdatasync(internal_fd_) != 0) {
      return sys_error("cannot truncate " + dir + "/raft.internal");
    }
  }
  internal_size_ = pos;
  // The log start may have moved past the snapshot (retention) before a crash.
  int64_t kstart = *log_.log_start_offset();
  if (kstart > kafka_of(snap_index_ + 1) && kstart < kend) {
    if (auto batch = log_.batch_at(Offset(kstart))) kstart = *batch->base_offset;  // its entry
  }
  if (kstart > kafka_of(snap_index_ + 1) && kstart <= kend) {
    const uint64_t idx = index_of(kstart) - 1;
    snap_term_ = term_at(idx);
    snap_index_ = idx;
  }
  mirrored_last_ = last_index();
  return {};
}

uint64_t Replica::last_index() const {
  return static_cast<uint64_t>(xlate_.to_log(*log_.log_end_offset()));
}

uint64_t Replica::term_at(uint64_t index) const {
  // Every term's first entry is Raft's own (a leader's no-op): data takes the term of the
  // internal entry before it.
  auto it = std::upper_bound(internal_.begin(), internal_.end(), index,
                             [](uint64_t i, const Internal& e) { return i < e.index; });
  if (it != internal_.begin()) return std::prev(it)->term;
  return snap_term_;
}

raft::RestoredState Replica::restored_state() {
  raft::RestoredState rs;
  rs.hard_state.term = Term(state_.term);
  rs.hard_state.vote = raft::NodeId(static_cast<int32_t>(state_.vote));
  const uint64_t last = last_index();
  rs.hard_state.commit = LogIndex(std::clamp(state_.commit, snap_index_, last));
  rs.snapshot.index = LogIndex(snap_index_);
  rs.snapshot.term = Term(snap_term_);
  rs.snapshot.conf = snap_conf_;
  for (const Internal& e : internal_) {
    if (e.index <= snap_index_ || e.type != raft::EntryType::kConfig) continue;
    auto conf = raft::decode_conf_state(e.data.bytes());
    if (conf) {
      rs.source_confs.emplace_back(LogIndex(e.index), *conf);
    }
  }
  rs.source_last = LogIndex(last);
  if (last > snap_index_) {
    uint64_t cur = snap_term_;
    rs.term_starts.emplace_back(LogIndex(snap_index_ + 1), Term(snap_term_));
    for (const Internal& e : internal_) {
      if (e.index <= snap_index_ || e.term == cur) continue;
      if (*rs.term_starts.back().first == e.index) {
        rs.term_starts.back().second = Term(e.term);
      } else {
        rs.term_starts.emplace_back(LogIndex(e.index), Term(e.term));
      }
      cur = e.term;
    }
  }
  rs.applied = rs.hard_state.commit;
  commit_persisted_ = *rs.hard_state.commit;
  return rs;
}

// ---- LogSource ----

std::vector<raft::Entry> Replica::entries(LogIndex lo, LogIndex hi, uint64_t max_bytes) {
  std::vector<raft::Entry> out;
  uint64_t bytes = 0;
  uint64_t i = *lo;
  while (i <= *hi && (out.empty() || bytes < max_bytes)) {
    auto it = std::lower_bound(internal_.begin(), internal_.end(), i,
                               [](const Internal& e, uint64_t x) { return e.index < x; });
    if (it != internal_.end() && it->index == i) {
      out.push_back(raft::Entry{LogIndex(i), Term(it->term), it->type, it->data, 1});
      bytes += it->data.size();
      ++i;
      continue;
    }
    // Data from the Kafka offset of `i` up to the next internal entry.
    const int64_t k = kafka_of(i);
    std::optional<Offset> limit;
    if (it != internal_.end()) limit = Offset(it->kafka_pos);
    const uint64_t want = out.empty() ? max_bytes : max_bytes - bytes;
    auto read = read_source(k, std::max<uint64_t>(want, 1), limit);
    if (!read || read->empty()) return out;
    if (read->front().base_offset != Offset(k)) return {};  // not where the index says
    for (const log::StoredBatch& b : *read) {
      const uint64_t idx = index_of(*b.base_offset);
      const auto width = static_cast<uint32_t>(*b.last_offset - *b.base_offset + 1);
      if (idx > *hi) return out;
      // Referred to in the segment file, not read: the transport sends it from there
      // (sendfile), and the follower checks it (check_append).
      out.push_back(raft::Entry{
          LogIndex(idx), Term(term_at(idx)), raft::EntryType::kNormal,
          raft::Payload::in_file(b.range.file, b.range.fd(), b.range.position, b.range.length),
          width});
      bytes += b.range.length;
      i = idx + width;
      if (bytes >= max_bytes) return out;
    }
  }
  return out;
}

log::LogResult<std::vector<log::StoredBatch>> Replica::read_source(int64_t from,
                                                                   uint64_t max_bytes,
                                                                   std::optional<Offset> limit) {
  // Every read that lacks something sends for it (the log does not send again what is on its
  // way): with several followers behind, each one's reads get their turn.
  auto more = [this, &io = io_, alive = alive_] {
    // From the ring's completion: the node is told from the replica's own turn.
    asio::post(io, [this, alive] {
      if (!*alive || failed_) return;
      node_->source_ready();
      schedule();
    });
  };
  auto short_it = source_short_.find(from);
  const int short_before = short_it == source_short_.end() ? 0 : short_it->second;
  auto now = log_.read_batches_now(Offset(from), max_bytes, limit, short_before, more);
  if (!now) return unexpected(now.error());
  if (!now->batches.empty()) {
    if (short_it != source_short_.end()) source_short_.erase(short_it);
  } else if (now->pending) {
    // What a load brought did not answer the next read from here: counted, per place read
    // from (a follower's reads), so that others' answers do not hide it.
    if (source_short_.size() >= 64) source_short_.clear();
    ++source_short_[from];
  }
  return std::move(now->batches);
}

// ---- proposals ----

int64_t Replica::kafka_end_of_node_log() const {
  int64_t k = xlate_.to_kafka(static_cast<int64_t>(mirrored_last_));
  const auto mem = node_->log().entries();
  for (auto it = mem.rbegin(); it != mem.rend() && *it->index > mirrored_last_; ++it) {
    if (it->type == raft::EntryType::kNormal) k += it->width;
  }
  return k;
}

ErrorCode Replica::produce(MutableBytes batch, int16_t acks, ProduceDone done,
                           int64_t timeout_ms, std::shared_ptr<const void> owner) {
  if (failed_) return ErrorCode::kKafkaStorageError;
  if (!is_leader()) return ErrorCode::kNotLeaderOrFollower;
  auto view = kafka::RecordBatchView::parse(batch);
  if (!view) return ErrorCode::kCorruptMessage;
  const auto width = static_cast<uint32_t>(view->last_offset_delta() + 1);
  const int64_t base = kafka_end_of_node_log();
  const uint64_t term = *node_->term();
  kafka::set_base_offset(batch, base);
  kafka::set_partition_leader_epoch(batch, static_cast<int32_t>(term));
  auto index = node_->propose(owner ? raft::Payload::share(std::move(owner), Bytes(batch))
                                    : raft::Payload::copy_of(Bytes(batch)),
                              width);
  if (!index) {
    return index.error() == raft::Errc::kTooManyUncommitted ? ErrorCode::kRequestTimedOut
                                                             : ErrorCode::kNotLeaderOrFollower;
  }
  proposed_last_ = **index + width - 1;
  proposed_bytes_ += batch.size();
  proposed_term_ = term;
  if (done) {
    waiters_.emplace(**index + width - 1,
                     Waiter{.acks = acks,
                            .term = term,
                            .kafka_base = base,
                            .done = std::move(done),
                            .deadline_ms = timeout_ms > 0 ? steady_ms() + timeout_ms : 0});
  }
  schedule();
  return ErrorCode::kNone;
}

void Replica::when_committed(int64_t kafka_end, std::function<void(ErrorCode)> done) {
  if (kafka_end <= high_watermark()) {
    done(ErrorCode::kNone);
    return;
  }
  commit_waiters_.emplace(static_cast<uint64_t>(xlate_.to_log(kafka_end - 1)) + 1,
                          std::move(done));
}

void Replica::tick() {
  if (failed_) return;
  node_->tick();
  if (!waiters_.empty()) {  // Produce's timeout_ms: answered, not held
    const int64_t now = steady_ms();
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      if (it->second.deadline_ms > 0 && now >= it->second.deadline_ms) {
        auto done = std::move(it->second.done);
        it = waiters_.erase(it);
        done(ErrorCode::kRequestTimedOut, -1);
      } else {
        ++it;
      }
    }
  }
  if (is_leader()) {
    const int64_t now = steady_ms();
    const uint64_t commit = node_->log().committed();
    for (int32_t v : voters_) {
      const auto* pr = node_->progress(raft::NodeId(v));
      if (pr && pr->match >= commit) caught_up_ms_[v] = now;
      if (pr && pr->lost_entries > lost_seen_[v]) {
        lost_seen_[v] = pr->lost_entries;
        spdlog::warn("{}: replica on broker {} lost entries it had acknowledged (its log ends at "
                     "raft index {}); sending them again",
                     options_.name, v, pr->match);
      }
    }
  }
  after_role_change();
  schedule();
}

// A follower takes its leader's batches as they come from the leader's files (sendfile) or
// memory: each must parse whole, pass its CRC, and say what the entry says (records = width,
// leader epoch = term). A message with one that does not is dropped, not stored: the leader
// sends it again, and a leader that lost its term meanwhile (its files rewritten under a
// message queued before) is ignored once the follower hears of the new term.
bool Replica::check_append(raft::Message& m) {
  for (raft::Entry& e : m.entries) {
    if (e.type != raft::EntryType::kNormal) continue;
    if (e.data.in_file()) {  // in-process delivery (tests): a network peer sends bytes
      auto loaded = e.data.loaded();
      if (!loaded) return reject_append(m, loaded.error().message);
      e.data = std::move(*loaded);
    }
    auto view = kafka::RecordBatchView::parse(e.data.bytes());
    if (!view || view->size_bytes() != e.data.size()) {
      return reject_append(m, "an entry that is not one whole record batch");
    }
    if (static_cast<uint64_t>(view->last_offset_delta()) + 1 != e.width ||
        view->partition_leader_epoch() != static_cast<int32_t>(*e.term)) {
      return reject_append(m, fmt::format("an entry of {} records in term {} holding a batch of {} "
                                          "records of epoch {}",
                                          e.width, *e.term, view->last_offset_delta() + 1,
                                          view->partition_leader_epoch()));
    }
    if (auto crc = view->verify_crc(); !crc) return reject_append(m, crc.error().message);
  }
  return true;
}

bool Replica::reject_append(const raft::Message& m, const std::string& why) {
  ++appends_rejected_;
  const int64_t now = steady_ms();
  if (now - reject_logged_ms_ >= 10'000) {
    reject_logged_ms_ = now;
    spdlog::warn("replica of group {:x}: dropped an append from broker {} (term {}): {}",
                 options_.group, *m.from, *m.term, why);
  }
  return false;
}

void Replica::step(raft::Message&& message) {
  if (failed_) return;
  heard_ms_[static_cast<int32_t>(*message.from)] = steady_ms();
  if (message.type == raft::MessageType::kAppend && !message.entries.empty() &&
      !check_append(message)) {
    return;
  }
  node_->step(message);
  after_role_change();
  schedule();
}

void Replica::peers_silent() {
  if (failed_) return;
  silence_woke_ = node_->quiesced();
  node_->peers_silent();
  after_role_change();
  schedule();  // sees the quiescence end (if it had not seen it start: nothing to skip)
  silence_woke_ = false;
}

void Replica::campaign() {
  if (failed_) return;
  node_->campaign();
  after_role_change();
  schedule();
}

Result<void, raft::Errc> Replica::transfer_leadership(int32_t to) {
  auto r = node_->transfer_leadership(raft::NodeId(to));
  schedule();
  return r;
}

Result<void, raft::Errc> Replica::change_membership(const raft::ConfState& next) {
  if (failed_) return unexpected(raft::Errc::kNotLeader);
  auto r = node_->propose_conf(next);
  if (!r) return unexpected(r.error());
  schedule();
  return {};
}

bool Replica::caught_up(int32_t id) const {
  if (!is_leader()) return false;
  if (id == options_.self) return true;
  // Heard from within an election timeout, by our own clock of messages: not the core's
  // `recent_active`, which check-quorum clears for everyone once per election timeout, so that
  // a caller polling on a tick lined up with the clearing never saw anyone caught up (leader
  // balancing waited forever that way, and the ISR dropped every follower for a moment).
  const auto* pr = node_->progress(raft::NodeId(id));
  // Quiesced: every follower held everything, and its broker is heard from (the shard ends
  // the quiescence otherwise).
  return pr != nullptr && pr->match >= node_->log().committed() &&
         (node_->quiesced() || heard_recently(id));
}

bool Replica::heard_recently(int32_t id) const {
  auto it = heard_ms_.find(id);
  const int64_t window = static_cast<int64_t>(options_.raft.election_ticks) * options_.tick_ms;
  return it != heard_ms_.end() && steady_ms() - it->second <= window;
}

bool Replica::serving() const {
  if (!is_leader() || failed_) return false;
  const uint64_t commit = node_->log().committed();
  return term_at_node(commit) == *node_->term();
}

uint64_t Replica::term_at_node(uint64_t index) const {
  auto t = node_->log().term(index);
  return t ? *t : 0;
}

int64_t Replica::high_watermark() const {
  const uint64_t commit = std::min<uint64_t>(node_->log().committed(), mirrored_last_);
  const int64_t hw = xlate_.to_kafka(static_cast<int64_t>(commit));
  return std::min<int64_t>(hw, *log_.written_offset());
}

int64_t Replica::log_end() const { return kafka_end_of_node_log(); }

std::vector<int32_t> Replica::voters() const { return voters_; }

void Replica::refresh_voters() {
  voters_.clear();
  for (raft::NodeId v : node_->status().conf.voters) voters_.push_back(*v);
}

std::vector<int32_t> Replica::in_sync_replicas(int64_t lag_ms) const {
  if (!is_leader()) return voters();
  const int64_t now = steady_ms();
  std::vector<int32_t> out;
  for (int32_t id : voters_) {
    const raft::NodeId v(id);
    if (id == options_.self) {
      out.push_back(id);
      continue;
    }
    const auto* pr = node_->progress(v);
    if (pr && node_->quiesced() && is_leader()) {  // see caught_up()
      out.push_back(id);
      continue;
    }
    auto it = caught_up_ms_.find(id);
    if (pr && heard_recently(id) && it != caught_up_ms_.end() && now - it->second <= lag_ms) {
      out.push_back(id);
    }
  }
  return out;
}

std::vector<std::pair<int32_t, int64_t>> Replica::follower_lag() const {
  std::vector<std::pair<int32_t, int64_t>> out;
  if (!is_leader()) return out;
  const uint64_t last = *node_->status().last_index;
  for (int32_t id : voters_) {
    if (id == options_.self) continue;
    const auto* pr = node_->progress(raft::NodeId(id));
    const uint64_t match = pr ? std::min(pr->match, last) : 0;
    out.emplace_back(id, static_cast<int64_t>(last - match));
  }
  return out;
}

std::pair<int32_t, int64_t> Replica::end_offset_for_epoch(int32_t epoch) const {
  // Term runs: each starts at an internal entry of a new term.
  if (epoch < 0) return {-1, -1};
  int64_t found = -1;
  uint64_t next_start = 0;  // the first index of the next larger term
  uint64_t cur = snap_term_;
  if (snap_term_ <= static_cast<uint64_t>(epoch) && snap_index_ > 0) found = static_cast<int64_t>(snap_term_);
  for (const auto& [idx, t] : pre_snapshot_) {
    (void)idx;
    if (t <= static_cast<uint64_t>(epoch)) found = std::max<int64_t>(found, static_cast<int64_t>(t));
  }
  for (const Internal& e : internal_) {
    if (e.term == cur) continue;
    cur = e.term;
    if (e.term <= static_cast<uint64_t>(epoch)) {
      found = static_cast<int64_t>(e.term);
    } else {
      next_start = e.index;
      break;
    }
  }
  if (found < 0) return {-1, -1};
  // Terms the node has appended and not yet handed to us (a new leader's no-op).
  if (next_start == 0 && *node_->term() > static_cast<uint64_t>(found) && is_leader() &&
      static_cast<uint64_t>(epoch) < *node_->term()) {
    return {static_cast<int32_t>(found), log_end()};
  }
  const int64_t end = next_start == 0 ? log_end() : kafka_of(next_start);
  return {static_cast<int32_t>(found), end};
}

// Control entries: u8 kind | kind's data.
constexpr uint8_t kControlLogStart = 1;  // i64 Kafka offset: the log starts there

kafka::ErrorCode Replica::replicate_log_start(int64_t kafka_start,
                                              std::function<void(ErrorCode)> done) {
  if (failed_) return ErrorCode::kKafkaStorageError;
  std::string data;
  put<uint8_t>(data, kControlLogStart);
  put<int64_t>(data, kafka_start);
  auto idx = node_->propose_control(raft::Payload::copy_of(data));
  if (!idx) return ErrorCode::kNotLeaderOrFollower;
  commit_waiters_.emplace(**idx, std::move(done));
  schedule();
  return ErrorCode::kNone;
}

void Replica::apply_control(const raft::Entry& e) {
  const std::string_view data = e.data.text();
  if (data.size() != 9 || static_cast<uint8_t>(data[0]) != kControlLogStart) {
    spdlog::warn("{}: control entry {} of unknown kind ignored", options_.name, *e.index);
    return;
  }
  // Never past what this replica holds: the data before the entry is in its log by now.
  const int64_t start = std::min(get<int64_t>(data.data() + 1), *log_.written_offset());
  if (start <= *log_.log_start_offset()) return;
  if (auto r = log_.advance_log_start(Offset(start)); !r) {
    spdlog::warn("{}: cannot move the log start to {}: {}", options_.name, start,
                 r.error().message);
    return;
  }
  spdlog::info("{}: records before offset {} deleted (DeleteRecords, replicated)", options_.name,
               start);
  log_start_moved();
}

void Replica::log_start_moved() {
  const int64_t kstart = *log_.log_start_offset();
  if (kstart <= kafka_of(snap_index_ + 1)) return;
  if (kstart >= *log_.log_end_offset()) return compact_to_log_start(kstart);
  // DeleteRecords may start the log inside a batch: the node's log starts at that batch (an
  // entry boundary); consumers still see the log start asked for. The batch's header may be
  // older than the log's window of recent batches: it comes through the ring (read_async),
  // not from a pread on the shard.
  auto returned = std::make_shared<bool>(false);
  log_.read_async(Offset(kstart), 1, std::nullopt,
                  [this, &io = io_, alive = alive_, returned](log::LogResult<log::ReadResult> r) {
                    if (!r || r->ranges.empty()) return;
                    const int64_t base = *r->first_offset;
                    if (!*returned) return compact_to_log_start(base);  // answered at once
                    // From the ring's completion: from the replica's own turn.
                    asio::post(io, [this, alive, base] {
                      if (!*alive || failed_) return;
                      compact_to_log_start(base);
                    });
                  });
  *returned = true;
}

void Replica::compact_to_log_start(int64_t kstart) {
  if (kstart <= kafka_of(snap_index_ + 1)) return;
  const uint64_t idx = index_of(kstart) - 1;
  if (idx > node_->log().applied() || idx <= snap_index_) return;
  const LogStartImage img{kstart, static_cast<int64_t>(idx) - kstart};
  std::string data;
  put<int64_t>(data, img.kafka_start);
  put<int64_t>(data, img.internal_before);
  const raft::Snapshot snap = node_->compact(LogIndex(idx), raft::Payload::copy_of(data));
  snap_index_ = *snap.index;
  snap_term_ = *snap.term;
  snap_conf_ = snap.conf;
  state_.snap_index = snap_index_;
  state_.snap_term = snap_term_;
  state_.internal_before = img.internal_before;
  write_slot(false, {});
}

bool Replica::hand_off() {
  if (failed_ || !is_leader()) return false;
  const raft::NodeStatus st = node_->status();
  if (st.conf.voters.size() < 2) return false;
  if (st.transferee != raft::kNoNode) return true;  // under way
  raft::NodeId best = raft::kNoNode;
  uint64_t best_match = 0;
  for (raft::NodeId v : st.conf.voters) {
    if (*v == options_.self) continue;
    const auto* pr = node_->progress(v);
    if (pr && pr->recent_active && (best == raft::kNoNode || pr->match > best_match)) {
      best = v;
      best_match = pr->match;
    }
  }
  if (best == raft::kNoNode) return false;  // nobody to take it: an election will
  (void)node_->transfer_leadership(best);
  after_role_change();
  schedule();
  return true;
}

// ---- the Ready pipeline ----

void Replica::schedule() {
  // Every way in (step, produce, campaign, membership, transfer, tick) ends here.
  if (sleeping_) {
    sleeping_ = false;
    if (events_.on_wake) events_.on_wake();
  }
  if (node_->quiesced() != quiesced_seen_) {
    quiesced_seen_ = node_->quiesced();
    // Quiesced, the followers held everything and their brokers were heard from (the shard
    // ends the quiescence when they go silent): they are in sync as of now, not as of the
    // last message, which may be long ago.
    if (!quiesced_seen_ && !silence_woke_ && is_leader()) {
      const int64_t now = steady_ms();
      for (int32_t v : voters_) {
        heard_ms_[v] = now;
        caught_up_ms_[v] = now;
      }
    }
    silence_woke_ = false;
  }
  if (scheduled_ || running_ || failed_ || !node_->has_ready()) return;
  scheduled_ = true;
  // Proposals of this leader not yet handed out: the Ready writes and syncs them, so it waits
  // for its turn under the shard's pace (SyncPacer); whatever is proposed meanwhile joins it.
  // (A deposed leader's proposal a new leader's shorter log cut away can leave proposed_last_
  // ahead of mirrored_last_ for a while: a follower's persists are never paced.)
  auto go = [this, alive = alive_] {
    if (!*alive) return;
    scheduled_ = false;
    run();
  };
  if (options_.pacer && proposed_last_ > mirrored_last_ && is_leader() &&
      (options_.pace_below_bytes == 0 || proposed_bytes_ < options_.pace_below_bytes) &&
      !options_.pacer->admit(go)) {
    return;
  }
  asio::post(io_, std::move(go));
}

void Replica::run() {
  if (running_ || failed_ || !node_->has_ready()) return;
  running_ = true;
  // The Ready's data and index writes and its sync go to the kernel together.
  const log::IoRing::Batch batch(ring_);
  auto rd = std::make_shared<raft::Ready>(node_->take_ready());
  // The proposals so far go out with this Ready (one cut short by its size limit leaves some,
  // which then count as few bytes: paced as before).
  if (!rd->entries.empty()) proposed_bytes_ = 0;
  Plan plan;
  // Mirror the node's log: the translator and internal entries follow what the node hands
  // out, before it is on disk (the leader computes offsets from them).
  if (rd->snapshot) {
    plan.install = true;
    internal_.clear();
    const raft::Snapshot& s = *rd->snapshot;
    LogStartImage img;
    if (s.data.size() >= 16) {
      img.kafka_start = get<int64_t>(reinterpret_cast<const char*>(s.data.bytes().data()));
      img.internal_before = get<int64_t>(reinterpret_cast<const char*>(s.data.bytes().data()) + 8);
    }
    if (img.kafka_start < 0 || img.internal_before < 0 ||
        static_cast<uint64_t>(img.kafka_start + img.internal_before) != *s.index) {
      return fail("a snapshot from the leader does not describe a log start");
    }
    plan.install_image = img;
    xlate_ = log::OffsetTranslator(static_cast<int64_t>(*s.index), img.internal_before);
    snap_index_ = *s.index;
    snap_term_ = *s.term;
    snap_conf_ = s.conf;
    pre_snapshot_.clear();
    mirrored_last_ = *s.index;
  }
  if (!rd->entries.empty()) {
    const uint64_t from = *rd->entries.front().index;
    if (from <= mirrored_last_) {
      // A follower's conflicting suffix: forget it here, cut it from the files below.
      auto it = std::lower_bound(internal_.begin(), internal_.end(), from,
                                 [](const Internal& e, uint64_t x) { return e.index < x; });
      if (it != internal_.end()) {
        plan.internal_cut = std::min(plan.internal_cut, it->file_pos);
        internal_.erase(it, internal_.end());
      }
      xlate_.truncate_suffix(static_cast<int64_t>(from) - 1);
      plan.data_cut = xlate_.to_kafka(static_cast<int64_t>(from) - 1);
    } else if (from <= proposed_last_) {
      // Entries of another term where this replica's own proposals were, before any Ready
      // handed those out: they are gone, and the producers' table still has them.
      for (const raft::Entry& e : rd->entries) {
        if (*e.index > proposed_last_) break;
        if (*e.term != proposed_term_) {
          plan.forget_proposals = true;
          proposed_last_ = 0;
          break;
        }
      }
    }
    plan.own_term = is_leader() ? *node_->term() : 0;
    for (const raft::Entry& e : rd->entries) {
      if (e.type == raft::EntryType::kNormal) {
        plan.data.push_back(&e);
        if (!plan.own(e) && events_.on_data) events_.on_data(e.data.bytes());
        continue;
      }
      Internal in{.index = *e.index,
                  .term = *e.term,
                  .type = e.type,
                  .kafka_pos = xlate_.to_kafka(static_cast<int64_t>(*e.index) - 1),
                  .data = e.data};
      xlate_.add_internal(static_cast<int64_t>(*e.index) - 1, 1);
      plan.internal.push_back(in);
      internal_.push_back(std::move(in));
    }
    mirrored_last_ = rd->entries.back().last();
  }
  if (rd->hard_state) {
    const uint64_t term = *rd->hard_state->term;
    const auto vote = static_cast<int64_t>(*rd->hard_state->vote);
    if (term != state_.term || vote != state_.vote) plan.hard_state = true;
    state_.term = term;
    state_.vote = vote;
  }
  // A leader's appends and heartbeats go out now, while its own write runs (etcd's
  // asynchronous storage writes): they promise nothing about this replica's disk, and the
  // leader counts its own log towards commit only once advance() reports it durable. Its term
  // was made durable when it campaigned. Votes and acknowledgements wait for the disk.
  if (is_leader() && !plan.hard_state && !rd->messages.empty() && events_.send) {
    std::vector<raft::Message> early, later;
    for (raft::Message& m : rd->messages) {
      (raft::promises_nothing_durable(m) ? early : later).push_back(std::move(m));
    }
    rd->messages = std::move(later);
    if (!early.empty()) events_.send(options_.group, std::move(early));
  }
  // A leader's own batches, appended after everything handed out before, and nothing else
  // (no term or vote, no Raft entry of its own, no cut): written and advanced at once,
  // reported durable later (raft::Node::persisted), so that the next Ready's write overlaps.
  plan.async = options_.async_writes && rd->must_sync && is_leader() && !rd->snapshot &&
               !plan.hard_state && plan.internal.empty() && !plan.forget_proposals &&
               plan.data_cut < 0 && plan.internal_cut == UINT64_MAX && !plan.data.empty() &&
               plan.data.size() == rd->entries.size();
  execute(rd, std::make_shared<Plan>(std::move(plan)));
}

// The log was cut (or restarted) for this Ready: whoever mirrors the log's contents (the
// idempotent producers' table) rebuilds from what the files hold now, which does not include
// this Ready's entries yet: run() reported them before the cut, so they are reported again.
// Without that, a follower that replaced a conflicting suffix forgot the batches that replaced
// it, and once leader appended a producer's retry of one of them a second time.
void Replica::truncated(const Plan& plan) {
  if (plan.install) {
    spdlog::info("{}: log restarted at offset {} from the leader's snapshot", options_.name,
                 *log_.log_start_offset());
  } else if (plan.data_cut >= 0) {
    spdlog::info("{}: log cut to offset {}: entries its leader does not have", options_.name,
                 *log_.log_end_offset());
  }
  if (events_.on_truncated) events_.on_truncated();
  if (!events_.on_data) return;
  for (const raft::Entry* e : plan.data) {
    if (!plan.own(*e)) events_.on_data(e->data.bytes());
  }
}

void Replica::execute(std::shared_ptr<raft::Ready> rd, std::shared_ptr<Plan> plan) {
  // 1. Truncation and log restarts need the log idle: wait for it (told by the log once its
  // last operation completed; never block).
  const bool cut = plan->install || (plan->data_cut >= 0 && plan->data_cut < *log_.log_end_offset());
  // The table is rebuilt from the files: everything handed out before must be in them.
  if ((cut || plan->forget_proposals) && !log_.idle()) {
    // `io`, not `this`: the log may run this after the replica is gone (alive says so).
    log_.when_idle([this, &io = io_, alive = alive_, rd, plan] {
      asio::post(io, [this, alive, rd, plan] {
        if (*alive && !failed_) execute(rd, plan);
      });
    });
    return;
  }
  // Its files and the log's, when this Ready writes anything: most Readies of an idle group
  // carry only messages, and opening five files for each of them (then closing them again
  // under the holder cap) cost an idle broker with 2,200 partitions 15,000 open/close calls a
  // second.
  const bool writes = cut || !plan->data.empty() || !plan->internal.empty() ||
                      plan->hard_state ||
                      (plan->internal_cut != UINT64_MAX && plan->internal_cut < internal_size_);
  // Under the shard's cap on busy holders (log::FdCache): when every group persists at once
  // (start-up, thousands of partitions created), a Ready waits for descriptors to come back
  // instead of taking the process to its open-files limit.
  const size_t need = (fds_open() ? 0 : 1) + (log_.holds_fds() ? 0 : 1);
  if (writes && need > 0 && !log_.fd_cache().room_for(need)) {
    log_.fd_cache().wait_for_room([this, &io = io_, alive = alive_, rd, plan] {
      asio::post(io, [this, alive, rd, plan] {
        if (*alive && !failed_) execute(rd, plan);
      });
    });
    return;
  }
  if (writes && need > 0) {
    // Given back while idle (more busy partitions than the shard keeps descriptors for):
    // opened again through the ring, then this Ready starts over and finds them open.
    open_fds_through_ring([this, rd, plan](int32_t r) {
      if (failed_) return;
      if (r == -EMFILE || r == -ENFILE) {
        // At the process's limit (descriptors taken outside the shards' caps): again shortly.
        log_.fd_cache().trim();
        auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(10));
        timer->async_wait([this, alive = alive_, timer, rd, plan](boost::system::error_code) {
          if (*alive && !failed_) execute(rd, plan);
        });
        return;
      }
      if (r < 0) return fail(std::string("cannot open its files: ") + std::strerror(-r));
      execute(rd, plan);
    });
    return;
  }
  if (plan->install) {
    const int64_t start = *log_.log_start_offset();
    if (auto r = log_.truncate_suffix(Offset(start)); !r) return fail(r.error().message);
    if (plan->install_image.kafka_start > start) {
      if (auto r = log_.advance_log_start(Offset(plan->install_image.kafka_start)); !r) {
        return fail(r.error().message);
      }
    }
    plan->internal_cut = 0;
    state_.snap_index = snap_index_;
    state_.snap_term = snap_term_;
    state_.internal_before = plan->install_image.internal_before;
    plan->hard_state = true;
    truncated(*plan);
  } else if (plan->data_cut >= 0 && plan->data_cut < *log_.log_end_offset()) {
    // Through the ring (the files' cuts and the meta sync off the shard); this Ready goes on
    // once they completed, and finds nothing left to cut then.
    auto r = log_.truncate_suffix_async(
        Offset(plan->data_cut), [this, alive = alive_, rd, plan](const log::LogResult<Offset>& cut) {
          asio::post(io_, [this, alive, rd, plan, ok = cut.has_value(),
                           why = cut ? std::string() : cut.error().message] {
            if (!*alive || failed_) return;
            if (!ok) return fail(why);
            truncated(*plan);
            execute(rd, plan);
          });
        });
    if (!r) return fail(r.error().message);
    return;
  }
  if (plan->forget_proposals) {
    plan->forget_proposals = false;
    truncated(*plan);
  }
  if (!writes) {
    persist_data(rd, plan);  // nothing to write: straight to finish()
    return;
  }
  if (!open_fds() || !log_.reopen_fds()) {
    // At the process's limit all the same (descriptors taken outside the shards' caps).
    const int err = errno;
    if (err != EMFILE && err != ENFILE) {
      return fail(std::string("cannot open its files: ") + std::strerror(err));
    }
    auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(10));
    timer->async_wait([this, alive = alive_, timer, rd, plan](boost::system::error_code) {
      if (*alive) execute(rd, plan);
    });
    return;
  }
  persisting_ = true;   // until finish(): its files are written
  log_.keep_fds(true);  // and the data batches go into the log
  if (plan->internal_cut != UINT64_MAX && plan->internal_cut < internal_size_) {
    // Raft's own entries of a replaced suffix: cut through the ring (not on the shard), and
    // the entries that replace them are written once that completed.
    const uint64_t cut = plan->internal_cut;
    ring_.ftruncate(internal_fd_, cut, [this, &io = io_, alive = alive_, rd, plan, cut](int32_t r) {
      asio::post(io, [this, alive, rd, plan, cut, r] {
        if (!*alive || failed_) return;
        if (r < 0) return fail(std::string("cannot truncate raft.internal: ") + std::strerror(-r));
        internal_size_ = cut;
        write_raft_state(rd, plan);
      });
    });
    ring_.submit();
    return;
  }
  write_raft_state(rd, plan);
}

void Replica::write_raft_state(std::shared_ptr<raft::Ready> rd, std::shared_ptr<Plan> plan) {
  // 2. Raft's own entries and the hard state, durable before the data that follows: the
  // writes first, then (once they completed: the ring does not order them) the fdatasyncs.
  struct Meta {
    size_t pending = 0;
    int32_t error = 0;
    bool syncing = false;
    bool internal = false;
  };
  auto meta = std::make_shared<Meta>();
  meta->internal = !plan->internal.empty();
  std::shared_ptr<std::function<void(int32_t)>> next = std::make_shared<std::function<void(int32_t)>>();
  // The callbacks own `next`; it refers to itself weakly (no cycle).
  *next = [this, alive = alive_, rd, plan, meta,
           weak = std::weak_ptr<std::function<void(int32_t)>>(next)](int32_t res) {
    if (!*alive) return;
    if (res < 0 && meta->error == 0) meta->error = res;
    if (--meta->pending > 0) return;
    if (meta->error < 0) {
      return fail(std::string("raft state write failed: ") + std::strerror(-meta->error),
                  -meta->error);
    }
    if (!meta->syncing) {
      meta->syncing = true;
      auto self = weak.lock();
      auto again = [self](int32_t r) { (*self)(r); };
      if (meta->internal) {
        ++meta->pending;
        ring_.fdatasync(internal_fd_, again);
      }
      if (plan->hard_state) {
        ++meta->pending;
        ring_.fdatasync(state_fd_, again);
      }
      if (meta->pending > 0) {
        ring_.submit();
        return;
      }
    }
    persist_data(rd, plan);
  };
  for (Internal& in : plan->internal) {
    // The translator already counts it; its file position is where it is written.
    auto it = std::lower_bound(internal_.begin(), internal_.end(), in.index,
                               [](const Internal& e, uint64_t x) { return e.index < x; });
    const std::string rec = encode_internal(in);
    if (it != internal_.end() && it->index == in.index) it->file_pos = internal_size_;
    auto buf = std::make_shared<std::string>(rec);
    ++meta->pending;
    ring_.write(internal_fd_, as_bytes(std::string_view(*buf)), internal_size_,
                [buf, next](int32_t r) { (*next)(r); });
    internal_size_ += rec.size();
  }
  if (plan->hard_state) {
    ++meta->pending;
    write_slot(false, [next](int32_t r) { (*next)(r); }, /*force=*/true);
  }
  if (meta->pending == 0) {
    persist_data(rd, plan);
    return;
  }
  ring_.submit();
}

void Replica::write_slot(bool sync, std::function<void(int32_t)> done, bool force) {
  // One slot write at a time: two in flight could land in one slot out of order.
  if (slot_writes_ > 0 && !force) return;  // a hint: the next write carries it
  if (!force && !holds_fds() && !log_.fd_cache().room_for(1)) return;  // a later write carries it
  if (!open_fds()) {
    const int err = errno;
    if (!force) return;  // a hint: a later write carries it
    if (done) done(-err);
    return;
  }
  ++slot_writes_;
  state_.generation++;
  state_.commit = std::max(state_.commit, node_->log().committed());
  commit_persisted_ = state_.commit;
  auto buf = std::make_shared<std::string>(encode_slot(state_));
  const uint64_t at = (state_.generation % 2) * kSlotBytes;
  auto alive = alive_;
  ring_.write(state_fd_, as_bytes(std::string_view(*buf)), at,
              [this, alive, buf, done, sync](int32_t r) {
                if (!*alive) return;
                if (sync && r >= 0) {
                  ring_.fdatasync(state_fd_, [this, alive, done](int32_t r2) {
                    if (!*alive) return;
                    --slot_writes_;
                    if (done) done(r2);
                  });
                  ring_.submit();
                  return;
                }
                --slot_writes_;
                if (done) done(r);
              });
  ring_.submit();
}

void Replica::persist_data(std::shared_ptr<raft::Ready> rd, std::shared_ptr<Plan> plan,
                           size_t from) {
  if (plan->data.empty()) {
    if (writing_ > 0 && rd->must_sync) {
      // Raft's own entries or a new term after batches still being synced: the node hears of
      // them only once those are durable too (raft/node.h, asynchronous writes).
      when_log_durable(log_.log_end_offset(), [this, rd] { finish(rd); });
      return;
    }
    finish(rd);
    return;
  }
  // A catching-up follower's Ready can hold thousands of small batches (an append message
  // carries up to 1 MiB), more than the log takes in flight at once (LogConfig::
  // inflight_appends_max, 1024 by default): they go in chunks, each durable before the next.
  constexpr size_t kAppendChunk = 256;
  const size_t to = std::min(plan->data.size(), from + kAppendChunk);
  std::vector<MutableBytes> parts;
  parts.reserve(to - from);
  for (size_t i = from; i < to; ++i) {
    const Bytes b = plan->data[i]->data.bytes();
    // Written as they are (stamped by the leader; AppendOptions::stamped never writes into them).
    parts.emplace_back(const_cast<std::byte*>(b.data()), b.size());
  }
  log::AppendOptions opts;
  opts.stamped = true;
  // Checked once: the leader's own batches by Produce, a follower's by step (check_append).
  opts.crc_checked = true;
  opts.roll_async = true;  // a roll's new files are opened through the ring (kBusy meanwhile)
  auto appended = log_.append(parts, opts, {});
  if (!appended && appended.error().code == log::LogErrc::kBusy) {
    // Writes of an earlier Ready still in flight, the next segment's files being opened, a cut
    // completing: again once the log says what it waited for completed (never block the shard).
    log_.when_appendable([this, &io = io_, alive = alive_, rd, plan, from] {
      asio::post(io, [this, alive, rd, plan, from] {
        if (*alive && !failed_) persist_data(rd, plan, from);
      });
    });
    return;
  }
  if (!appended) return fail("cannot append: " + appended.error().message);
  SLUICE_ASSERT(appended->parts >= 1 && appended->parts <= to - from);
  if (appended->parts < to - from) {
    // They roll more often than the log prepares segments ahead (segments smaller than the
    // batches): the rest go next, as soon as their segments' files are open.
    asio::post(io_, [this, alive = alive_, rd, plan, next = from + appended->parts] {
      if (*alive && !failed_) persist_data(rd, plan, next);
    });
    ring_.submit();
    return;
  }
  if (to < plan->data.size()) {
    when_log_durable(appended->end_offset, [this, rd, plan, to] { persist_data(rd, plan, to); });
    return;
  }
  if (!rd->must_sync) {
    finish(rd);
    ring_.submit();
    return;
  }
  if (plan->async) {
    // Told durable once the log's fdatasync covers it; the node takes the next Ready now.
    ++writing_;
    when_log_durable(appended->end_offset, [this, persisted = rd->persisted(),
                                            later = std::move(rd->messages)]() mutable {
      if (failed_) return;
      --writing_;
      node_->persisted(persisted);
      if (!later.empty() && events_.send) events_.send(options_.group, std::move(later));
      complete_waiters();
      if (events_.on_commit) events_.on_commit();
      schedule();
    });
    finish(rd, /*advanced=*/true);
    return;
  }
  when_log_durable(appended->end_offset, [this, rd] { finish(rd); });
}

void Replica::when_log_durable(Offset at, std::function<void()> then) {
  log_.when_durable(
      at, [this, alive = alive_, then = std::move(then)](const log::LogResult<Offset>& r) {
        if (!*alive) return;
        if (!r) return fail("cannot make the log durable: " + r.error().message);
        then();
      });
  ring_.submit();
}

void Replica::finish(std::shared_ptr<raft::Ready> rd, bool advanced) {
  if (failed_) return;
  if (!rd->messages.empty() && events_.send) events_.send(options_.group, std::move(rd->messages));
  node_->advance(advanced ? raft::Persisted{} : rd->persisted());
  running_ = false;
  persisting_ = false;
  log_.keep_fds(false);
  log_.fd_cache().release(this);  // at once if others wait for descriptors
  log_.fd_cache().release(&log_);
  for (const raft::Entry& e : rd->committed) {
    if (e.type == raft::EntryType::kConfig) refresh_voters();
    if (e.type == raft::EntryType::kControl) apply_control(e);
  }
  after_role_change();
  complete_waiters();
  if (events_.on_commit) events_.on_commit();
  schedule();
}

void Replica::complete_waiters() {
  const uint64_t commit = node_->log().committed();
  const uint64_t stable = node_->log().stable();
  const uint64_t term = *node_->term();
  const bool leader = is_leader();
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    Waiter& w = it->second;
    const bool ok = w.acks == 1 ? it->first <= stable : it->first <= commit;
    if (ok && w.term == term_at_node(it->first)) {
      auto done = std::move(w.done);
      const int64_t base = w.kafka_base;
      it = waiters_.erase(it);
      done(ErrorCode::kNone, base);
    } else if (!leader || w.term != term) {
      auto done = std::move(w.done);
      it = waiters_.erase(it);
      done(ErrorCode::kNotLeaderOrFollower, -1);
    } else {
      ++it;
    }
  }
  while (!commit_waiters_.empty() && commit_waiters_.begin()->first <= commit) {
    auto done = std::move(commit_waiters_.begin()->second);
    commit_waiters_.erase(commit_waiters_.begin());
    done(ErrorCode::kNone);
  }
  if (!leader) {
    auto waiting = std::move(commit_waiters_);
    commit_waiters_.clear();
    for (auto& [idx, done] : waiting) done(ErrorCode::kNotLeaderOrFollower);
  }
  // The commit hint: written (not synced) now and then, so a restart re-reads little.
  if (commit > commit_persisted_ + 10000 && !failed_) write_slot(false, {});
}

void Replica::after_role_change() {
  if (const uint64_t c = node_->campaigns(); c != campaigns_seen_) {
    if (events_.on_campaigns) events_.on_campaigns(c - campaigns_seen_);
    campaigns_seen_ = c;
  }
  const uint64_t term = *node_->term();
  const auto leader = static_cast<int32_t>(*node_->leader());
  const raft::Role role = node_->role();
  if (term == last_term_ && leader == last_leader_ && role == last_role_) return;
  const bool became_leader = role == raft::Role::kLeader && last_role_ != raft::Role::kLeader;
  const raft::Role was = last_role_;
  last_term_ = term;
  last_leader_ = leader;
  last_role_ = role;
  if (became_leader) {
    spdlog::info("{}: leader at epoch {}", options_.name, term);
  } else if (role != was && was == raft::Role::kLeader) {
    spdlog::info("{}: no longer the leader (epoch {}, leader {})", options_.name, term, leader);
  }
  if (became_leader) {
    caught_up_ms_.clear();
    lost_seen_.clear();  // a new term, new progress counters
    const int64_t now = steady_ms();
    for (int32_t v : voters_) caught_up_ms_[v] = now;
    for (int32_t v : voters_) heard_ms_[v] = now;  // as the core does: everyone starts active
  }
  complete_waiters();
  if (events_.on_role_change) events_.on_role_change();
}

void Replica::fail(const std::string& why, int err) {
  if (failed_) return;
  failed_ = true;
  failed_for_space_ = err == ENOSPC || err == EDQUOT;
  running_ = false;
  persisting_ = false;
  log_.keep_fds(false);
  log_.fd_cache().release(this);  // at once if others wait for descriptors
  log_.fd_cache().release(&log_);
  spdlog::error("replica of group {:x}: {}; it stops taking part", options_.group, why);
  abandon_waiters(ErrorCode::kKafkaStorageError);
  if (events_.on_failed) events_.on_failed(why);
}

void Replica::abandon_waiters(ErrorCode code) {
  auto waiting = std::move(waiters_);
  waiters_.clear();
  for (auto& [idx, w] : waiting) w.done(code, -1);
  auto cw = std::move(commit_waiters_);
  commit_waiters_.clear();
  for (auto& [idx, done] : cw) done(code);
}

}  // namespace sluice::broker
