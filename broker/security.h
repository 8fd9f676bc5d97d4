// Security state shared by the broker's connections: SCRAM credentials (salted and iterated,
// never passwords; broker/sasl.h). Thread-safe: SASL exchanges on every shard read it.
// The SASL requests themselves and the "nothing before authentication" rule are
// Broker::handle_security (broker/security.cc); docs/security.md is the user's view.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "broker/sasl.h"
#include "cluster/cluster.pb.h"
#include "cluster/scram.h"

namespace sluice::broker {

class Security {
 public:
  // The credential of `user` for `hash`: the cluster metadata's (AlterUserScramCredentials)
  // when the metadata knows the user, whatever its mechanisms; else the local one (the
  // bootstrap user from the configuration).
  std::optional<sasl::ScramCredential> credential(const std::string& user,
                                                  sasl::ScramHash hash) const {
    std::lock_guard lock(mutex_);
    if (image_) {
      if (auto u = image_->users().find(user); u != image_->users().end()) {
        const int32_t mechanism =
            hash == sasl::ScramHash::kSha256 ? cluster::scram::kSha256 : cluster::scram::kSha512;
        for (const auto& c : u->second.credentials()) {
          if (c.mechanism() == mechanism) {
            return sasl::ScramCredential{c.salt(), c.stored_key(), c.server_key(), c.iterations()};
          }
        }
        return std::nullopt;
      }
    }
    auto it = credentials_.find({user, hash});
    if (it == credentials_.end()) return std::nullopt;
    return it->second;
  }
  void set_credential(const std::string& user, sasl::ScramHash hash, sasl::ScramCredential c) {
    std::lock_guard lock(mutex_);
    credentials_[{user, hash}] = std::move(c);
  }
  bool has_user(const std::string& user) const {
    std::lock_guard lock(mutex_);
    auto it = credentials_.lower_bound({user, sasl::ScramHash::kSha256});
    return it != credentials_.end() && it->first.first == user;
  }
  // Each new metadata image (its users); an older one than the image held is ignored.
  void set_image(std::shared_ptr<const cluster::pb::Image> image) {
    std::lock_guard lock(mutex_);
    if (image_ && image->applied_index() < image_->applied_index() &&
        image->cluster_id() == image_->cluster_id()) {
      return;
    }
    image_ = std::move(image);
  }

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<const cluster::pb::Image> image_;
  std::map<std::pair<std::string, sasl::ScramHash>, sasl::ScramCredential> credentials_;
};

}  // namespace sluice::broker
