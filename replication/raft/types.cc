#include "replication/raft/types.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sstream>

namespace sluice::raft {

Payload Payload::copy_of(Bytes bytes) {
  return adopt(std::vector<std::byte>(bytes.begin(), bytes.end()));
}

Payload Payload::adopt(std::vector<std::byte> bytes) {
  auto buffer = std::make_shared<const std::vector<std::byte>>(std::move(bytes));
  const Bytes view(*buffer);
  return share(std::move(buffer), view);
}

Payload Payload::share(std::shared_ptr<const void> owner, Bytes bytes) {
  Payload p;
  if (bytes.empty()) return p;
  p.owner_ = std::move(owner);
  p.bytes_ = bytes;
  return p;
}

Payload Payload::in_file(std::shared_ptr<const void> owner, int fd, uint64_t offset, size_t size) {
  Payload p;
  if (size == 0) return p;
  SLUICE_ASSERT(fd >= 0);
  p.owner_ = std::move(owner);
  p.fd_ = fd;
  p.file_offset_ = offset;
  p.file_size_ = size;
  return p;
}

Result<Payload> Payload::loaded() const {
  if (!in_file()) return *this;
  std::vector<std::byte> out(file_size_);
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n =
        ::pread(fd_, out.data() + done, out.size() - done, static_cast<off_t>(file_offset_ + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      return error(errno, std::string("reading an entry from its file: ") + std::strerror(errno));
    if (n == 0) return error(EIO, "reading an entry from its file: the file ends before it");
    done += static_cast<size_t>(n);
  }
  return adopt(std::move(out));
}

bool operator==(const Payload& a, const Payload& b) {
  if (a.shares_buffer_with(b)) return true;
  if (a.in_file() || b.in_file()) {
    auto x = a.loaded();
    auto y = b.loaded();
    return x && y && *x == *y;
  }
  const Bytes x = a.bytes();
  const Bytes y = b.bytes();
  return x.size() == y.size() && std::equal(x.begin(), x.end(), y.begin());
}

bool ConfState::is_voter(NodeId id) const {
  return std::binary_search(voters.begin(), voters.end(), id);
}
bool ConfState::is_learner(NodeId id) const {
  return std::binary_search(learners.begin(), learners.end(), id);
}

// Format: u32 voter count, i32 ids, u32 learner count, i32 ids; all big-endian.
Payload encode_conf_state(const ConfState& conf) {
  std::vector<std::byte> out(8 + 4 * (conf.voters.size() + conf.learners.size()));
  std::byte* p = out.data();
  for (const auto* ids : {&conf.voters, &conf.learners}) {
    store_be<uint32_t>(p, static_cast<uint32_t>(ids->size()));
    p += 4;
    for (NodeId id : *ids) {
      store_be<int32_t>(p, *id);
      p += 4;
    }
  }
  SLUICE_ASSERT(p == out.data() + out.size());
  return Payload::adopt(std::move(out));
}

Result<ConfState> decode_conf_state(Bytes bytes) {
  ConfState conf;
  size_t pos = 0;
  for (auto* ids : {&conf.voters, &conf.learners}) {
    if (bytes.size() - pos < 4) return error(1, "config entry: truncated count");
    const uint32_t n = load_be<uint32_t>(bytes.data() + pos);
    pos += 4;
    if ((bytes.size() - pos) / 4 < n) return error(1, "config entry: truncated ids");
    for (uint32_t i = 0; i < n; ++i, pos += 4)
      ids->push_back(NodeId{load_be<int32_t>(bytes.data() + pos)});
    if (!std::is_sorted(ids->begin(), ids->end())) return error(1, "config entry: unsorted");
  }
  if (pos != bytes.size()) return error(1, "config entry: trailing bytes");
  return conf;
}

std::string to_string(const ConfState& conf) {
  std::ostringstream out;
  out << "voters=(";
  for (size_t i = 0; i < conf.voters.size(); ++i) out << (i ? " " : "") << *conf.voters[i];
  out << ")";
  if (!conf.learners.empty()) {
    out << " learners=(";
    for (size_t i = 0; i < conf.learners.size(); ++i) out << (i ? " " : "") << *conf.learners[i];
    out << ")";
  }
  return out.str();
}

RestoredState bootstrap(const ConfState& conf) {
  RestoredState s;
  s.entries.push_back(Entry{LogIndex{1}, Term{1}, EntryType::kConfig, encode_conf_state(conf)});
  s.hard_state = HardState{Term{1}, kNoNode, LogIndex{1}};
  return s;
}

std::string_view to_string(MessageType type) {
  switch (type) {
    case MessageType::kPreVote:
      return "PreVote";
    case MessageType::kPreVoteResp:
      return "PreVoteResp";
    case MessageType::kVote:
      return "Vote";
    case MessageType::kVoteResp:
      return "VoteResp";
    case MessageType::kAppend:
      return "App";
    case MessageType::kAppendResp:
      return "AppResp";
    case MessageType::kHeartbeat:
      return "Heartbeat";
    case MessageType::kHeartbeatResp:
      return "HeartbeatResp";
    case MessageType::kSnapshot:
      return "Snapshot";
    case MessageType::kTimeoutNow:
      return "TimeoutNow";
  }
  SLUICE_UNREACHABLE();
}

std::string to_string(const Message& m) {
  std::ostringstream out;
  out << *m.from << "->" << *m.to << " " << to_string(m.type) << " term=" << *m.term;
  switch (m.type) {
    case MessageType::kPreVote:
    case MessageType::kVote:
      out << " last=" << *m.log_term << "/" << *m.index << (m.force ? " force" : "");
      break;
    case MessageType::kPreVoteResp:
    case MessageType::kVoteResp:
      out << (m.reject ? " rejected" : " granted");
      break;
    case MessageType::kAppend: {
      out << " prev=" << *m.log_term << "/" << *m.index << " commit=" << *m.commit << " [";
      for (size_t i = 0; i < m.entries.size(); ++i) {
        const Entry& e = m.entries[i];
        out << (i ? " " : "") << *e.term << "/" << *e.index;
      }
      out << "]";
      break;
    }
    case MessageType::kAppendResp:
      out << " index=" << *m.index;
      if (m.reject) out << " rejected hint=" << *m.log_term << "/" << *m.reject_hint;
      break;
    case MessageType::kHeartbeat:
      out << " commit=" << *m.commit << (m.quiesce ? " quiesce" : "");
      break;
    case MessageType::kSnapshot:
      out << " snap=" << *m.snapshot->term << "/" << *m.snapshot->index << " "
          << to_string(m.snapshot->conf);
      break;
    case MessageType::kHeartbeatResp:
    case MessageType::kTimeoutNow:
      break;
  }
  return out.str();
}

std::string_view to_string(Errc errc) {
  switch (errc) {
    case Errc::kNotLeader:
      return "not leader";
    case Errc::kTransferring:
      return "leadership transfer in progress";
    case Errc::kTooManyUncommitted:
      return "too many uncommitted bytes";
    case Errc::kConfigPending:
      return "configuration change pending";
    case Errc::kInvalidConfig:
      return "invalid configuration change";
  }
  SLUICE_UNREACHABLE();
}

}  // namespace sluice::raft
