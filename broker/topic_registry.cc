#include "broker/topic_registry.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "broker/metadata.pb.h"

namespace sluice::broker {
namespace {

using kafka::ErrorCode;

constexpr int32_t kPartitionsMax = 100000;

std::array<uint8_t, 16> random_id() {
  std::random_device rd;
  std::array<uint8_t, 16> id{};
  for (auto& b : id) b = static_cast<uint8_t>(rd());
  return id;
}

// Kafka's cluster ids are 22-character URL-safe base64 of a random UUID.
std::string new_cluster_id() {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  auto id = random_id();
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (uint8_t b : id) {
    acc = (acc << 8) | b;
    bits += 8;
    while (bits >= 6) {
      out += kAlphabet[(acc >> (bits - 6)) & 63];
      bits -= 6;
    }
  }
  if (bits > 0) out += kAlphabet[(acc << (6 - bits)) & 63];
  return out;
}

bool fsync_path(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

TopicError storage_error(const std::string& what) {
  return TopicError{ErrorCode::kKafkaStorageError, what};
}

}  // namespace

bool TopicRegistry::is_internal(const std::string& name) {
  return name == "__consumer_offsets" || name == "__transaction_state";
}

namespace {

// What remove(), set_partition_count() and set_configs() find for `name`.
Result<const TopicInfo*, TopicError> find_changeable(const TopicsSnapshot& snap,
                                                    const std::string& name) {
  const TopicInfo* t = snap.find(name);
  if (!t) {
    return unexpected(
        TopicError{ErrorCode::kUnknownTopicOrPartition, "unknown topic '" + name + "'"});
  }
  if (auto ok = TopicRegistry::check_client_may_change(name); !ok) {
    return unexpected(std::move(ok).error());
  }
  return t;
}

}  // namespace

Result<void, TopicError> TopicRegistry::check_client_may_change(const std::string& name) {
  if (!is_internal(name)) return {};
  return unexpected(TopicError{ErrorCode::kTopicAuthorizationFailed,
                               "'" + name + "' is an internal topic, managed by the broker"});
}

Result<void, TopicError> TopicRegistry::validate_name(const std::string& name) {
  if (name.empty())
    return unexpected(TopicError{ErrorCode::kInvalidTopicException, "empty topic name"});
  if (name == "." || name == "..") {
    return unexpected(
        TopicError{ErrorCode::kInvalidTopicException, "topic name cannot be '.' or '..'"});
  }
  if (name.size() > 249) {
    return unexpected(
        TopicError{ErrorCode::kInvalidTopicException, "topic name is longer than 249 characters"});
  }
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return unexpected(TopicError{ErrorCode::kInvalidTopicException,
                                   "topic name '" + name +
                                       "' has characters other than ASCII letters, digits, "
                                       "'.', '_' and '-'"});
    }
  }
  return {};
}

Result<std::unique_ptr<TopicRegistry>> TopicRegistry::open(const std::string& data_dir,
                                                           const std::string& cluster_id) {
  std::error_code ec;
  std::filesystem::create_directories(data_dir, ec);
  if (ec) return error(2, "cannot create data directory '" + data_dir + "': " + ec.message());
  const std::string path = data_dir + "/metadata.bin";
  pb::MetadataImage image;
  if (std::filesystem::exists(path)) {
    std::ifstream in(path, std::ios::binary);
    if (!in || !image.ParseFromIstream(&in)) {
      return error(2, "metadata image '" + path + "' is unreadable or corrupt");
    }
  }
  std::string id = cluster_id.empty() ? image.cluster_id() : cluster_id;
  if (id.empty()) id = new_cluster_id();
  auto reg = std::unique_ptr<TopicRegistry>(new TopicRegistry(path, id));
  auto snap = std::make_shared<TopicsSnapshot>();
  snap->version = image.version();
  for (const auto& t : image.topics()) {
    TopicInfo info;
    info.name = t.name();
    info.partitions = t.partitions();
    info.replication_factor = static_cast<int16_t>(t.replication_factor());
    info.configs.insert(t.configs().begin(), t.configs().end());
    if (t.topic_id().size() == 16) std::memcpy(info.id.data(), t.topic_id().data(), 16);
    info.internal = t.internal();
    snap->topics.emplace(info.name, std::move(info));
  }
  reg->next_producer_id_ = std::max<int64_t>(image.next_producer_id(), 1000);
  reg->snapshot_ = snap;
  if (image.cluster_id() != id) {
    std::lock_guard lock(reg->mutex_);
    auto r = reg->commit(std::make_shared<TopicsSnapshot>(*snap), reg->next_producer_id_);
    if (!r) return error(2, r.error().message);
  }
  return reg;
}

std::optional<TopicInfo> TopicRegistry::find(const std::string& name) const {
  auto snap = snapshot();
  const TopicInfo* t = snap->find(name);
  return t ? std::optional<TopicInfo>(*t) : std::nullopt;
}

std::shared_ptr<const TopicsSnapshot> TopicRegistry::snapshot() const {
  std::lock_guard lock(mutex_);
  return snapshot_;
}

Result<void, TopicError> TopicRegistry::commit(std::shared_ptr<TopicsSnapshot> next,
                                               int64_t next_producer_id) {
  next->version = snapshot_->version + 1;
  pb::MetadataImage image;
  image.set_cluster_id(cluster_id_);
  image.set_version(next->version);
  image.set_next_producer_id(next_producer_id);
  for (const auto& [name, t] : next->topics) {
    auto* pt = image.add_topics();
    pt->set_name(t.name);
    pt->set_partitions(t.partitions);
    pt->set_replication_factor(t.replication_factor);
    pt->mutable_configs()->insert(t.configs.begin(), t.configs.end());
    pt->set_topic_id(std::string(t.id.begin(), t.id.end()));
    pt->set_internal(t.internal);
  }
  const std::string tmp = path_ + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out || !image.SerializeToOstream(&out))
      return unexpected(storage_error("cannot write " + tmp));
    out.flush();
    if (!out) return unexpected(storage_error("cannot write " + tmp));
  }
  if (!fsync_path(tmp, O_RDONLY)) return unexpected(storage_error("cannot fsync " + tmp));
  if (::rename(tmp.c_str(), path_.c_str()) != 0) {
    return unexpected(storage_error("cannot rename " + tmp + " to " + path_));
  }
  const std::string dir = std::filesystem::path(path_).parent_path().string();
  if (!fsync_path(dir.empty() ? "." : dir, O_RDONLY | O_DIRECTORY)) {
    return unexpected(storage_error("cannot fsync directory " + dir));
  }
  snapshot_ = std::move(next);
  next_producer_id_ = next_producer_id;
  return {};
}

Result<TopicInfo, TopicError> TopicRegistry::create(
    const std::string& name, int32_t partitions, int16_t replication_factor,
    const std::map<std::string, std::string>& configs, bool internal) {
  if (auto v = validate_name(name); !v) return unexpected(v.error());
  if (partitions <= 0 || partitions > kPartitionsMax) {
    return unexpected(
        TopicError{ErrorCode::kInvalidPartitions,
                   "partition count must be between 1 and " + std::to_string(kPartitionsMax)});
  }
  std::lock_guard lock(mutex_);
  if (snapshot_->find(name)) {
    return unexpected(
        TopicError{ErrorCode::kTopicAlreadyExists, "topic '" + name + "' already exists"});
  }
  if (auto ok = check_partition_budget(name, partitions); !ok) return unexpected(ok.error());
  auto next = std::make_shared<TopicsSnapshot>(*snapshot_);
  TopicInfo info{name, partitions, replication_factor, configs, random_id(),
                 internal || is_internal(name)};
  next->topics.emplace(name, info);
  if (auto r = commit(next, next_producer_id_); !r) return unexpected(r.error());
  return info;
}

Result<TopicInfo, TopicError> TopicRegistry::remove(const std::string& name) {
  std::lock_guard lock(mutex_);
  auto found = find_changeable(*snapshot_, name);
  if (!found) return unexpected(std::move(found).error());
  return erase(name);
}

Result<TopicInfo, TopicError> TopicRegistry::discard(const std::string& name) {
  std::lock_guard lock(mutex_);
  if (!snapshot_->find(name)) {
    return unexpected(
        TopicError{ErrorCode::kUnknownTopicOrPartition, "unknown topic '" + name + "'"});
  }
  return erase(name);
}

Result<TopicInfo, TopicError> TopicRegistry::erase(const std::string& name) {
  TopicInfo removed = *snapshot_->find(name);
  auto next = std::make_shared<TopicsSnapshot>(*snapshot_);
  next->topics.erase(name);
  if (auto r = commit(next, next_producer_id_); !r) return unexpected(r.error());
  return removed;
}

void TopicRegistry::set_partitions_max(int64_t count) {
  std::lock_guard lock(mutex_);
  partitions_max_ = count;
}

Result<void, TopicError> TopicRegistry::check_partition_budget(const std::string& except,
                                                               int64_t more) const {
  int64_t held = 0;
  for (const auto& [name, t] : snapshot_->topics) {
    if (name != except) held += t.partitions;
  }
  if (held + more <= partitions_max_) return {};
  return unexpected(TopicError{
      ErrorCode::kInvalidPartitions,
      "the broker holds " + std::to_string(held) + " partitions; " + std::to_string(more) +
          " more would pass its limit of " + std::to_string(partitions_max_) +
          " (set by the open-files limit, RLIMIT_NOFILE)"});
}

Result<TopicInfo, TopicError> TopicRegistry::set_partition_count(const std::string& name,
                                                                 int32_t count) {
  std::lock_guard lock(mutex_);
  auto found = find_changeable(*snapshot_, name);
  if (!found) return unexpected(std::move(found).error());
  const TopicInfo* t = *found;
  if (auto ok = check_partition_budget(name, count); !ok) return unexpected(ok.error());
  if (count <= t->partitions || count > kPartitionsMax) {
    return unexpected(TopicError{ErrorCode::kInvalidPartitions,
                                 "topic '" + name + "' has " + std::to_string(t->partitions) +
                                     " partitions; the new count must be larger (and at most " +
                                     std::to_string(kPartitionsMax) + ")"});
  }
  auto next = std::make_shared<TopicsSnapshot>(*snapshot_);
  next->topics[name].partitions = count;
  if (auto r = commit(next, next_producer_id_); !r) return unexpected(r.error());
  return next->topics[name];
}

Result<TopicInfo, TopicError> TopicRegistry::set_configs(
    const std::string& name, const std::map<std::string, std::string>& configs) {
  std::lock_guard lock(mutex_);
  auto found = find_changeable(*snapshot_, name);
  if (!found) return unexpected(std::move(found).error());
  auto next = std::make_shared<TopicsSnapshot>(*snapshot_);
  next->topics[name].configs = configs;
  if (auto r = commit(next, next_producer_id_); !r) return unexpected(r.error());
  return next->topics[name];
}

Result<int64_t, TopicError> TopicRegistry::allocate_producer_ids(int64_t count) {
  std::lock_guard lock(mutex_);
  const int64_t first = next_producer_id_;
  auto same = std::make_shared<TopicsSnapshot>(*snapshot_);
  if (auto r = commit(same, first + count); !r) return unexpected(r.error());
  return first;
}

}  // namespace sluice::broker
