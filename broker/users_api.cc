// SCRAM credentials in the cluster metadata: DescribeUserScramCredentials (50) and
// AlterUserScramCredentials (51). The client sends the salted password (PBKDF2 output), never
// the password; this broker turns it into StoredKey and ServerKey (broker/sasl.h) and the
// controller judges and records the change (cluster/scram.h). Every broker authenticates
// against the image's credentials (Security::set_image, broker/security.h).
#include <spdlog/spdlog.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "broker/broker.h"
#include "broker/kafka_errors.h"
#include "cluster/scram.h"

namespace sluice::broker {

using cluster::acl::Operation;
using cluster::acl::ResourceType;
using kafka::ErrorCode;

namespace {

std::string bytes_text(const std::vector<std::byte>& b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

}  // namespace

void Broker::handle_describe_user_scram_credentials(
    std::shared_ptr<Request> req, const kafka::DescribeUserScramCredentialsRequest& body) {
  using Result = kafka::DescribeUserScramCredentialsResponse::DescribeUserScramCredentialsResult;
  kafka::DescribeUserScramCredentialsResponse resp;
  if (!allowed(*req, Operation::kDescribe, ResourceType::kCluster, cluster::acl::kClusterName)) {
    // As Kafka's getErrorResponse: the error at the top and for each user asked about.
    const int16_t denied = code(ErrorCode::kClusterAuthorizationFailed);
    resp.error_code = denied;
    resp.error_message = "DESCRIBE on the cluster is needed to describe credentials";
    for (const auto& u : body.users ? *body.users : decltype(body.users)::value_type{}) {
      Result r;
      r.user = u.name;
      r.error_code = denied;
      r.error_message = resp.error_message;
      resp.results.push_back(std::move(r));
    }
    respond(*req, resp);
    return;
  }
  auto image = cluster_->image();
  auto describe = [&](const std::string& user, int16_t error, std::string message) {
    Result r;
    r.user = user;
    r.error_code = error;
    if (!message.empty()) r.error_message = std::move(message);
    auto it = image->users().find(user);
    if (error == 0 && it != image->users().end()) {
      for (const auto& c : it->second.credentials()) {
        r.credential_infos.push_back({static_cast<int8_t>(c.mechanism()), c.iterations()});
      }
    }
    resp.results.push_back(std::move(r));
  };
  if (!body.users || body.users->empty()) {  // null or empty: every user
    for (const auto& [user, creds] : image->users()) describe(user, 0, {});
  } else {
    std::map<std::string, int> seen;
    for (const auto& u : *body.users) seen[u.name]++;
    for (const auto& [name, count] : seen) {
      if (count > 1) {
        describe(name, code(ErrorCode::kDuplicateResource),
                 "Cannot describe SCRAM credentials for the same user twice in a single request: " +
                     name);
      } else if (!image->users().count(name)) {
        describe(name, code(ErrorCode::kResourceNotFound),
                 "Attempt to describe a user credential that does not exist: " + name);
      } else {
        describe(name, 0, {});
      }
    }
  }
  respond(*req, resp);
}

void Broker::handle_alter_user_scram_credentials(
    std::shared_ptr<Request> req, const kafka::AlterUserScramCredentialsRequest& body) {
  using Result = kafka::AlterUserScramCredentialsResponse::AlterUserScramCredentialsResult;
  // One result per user named, in the order users first appear.
  std::vector<std::string> users;
  {
    std::set<std::string> seen;
    auto note = [&](const std::string& u) {
      if (seen.insert(u).second) users.push_back(u);
    };
    for (const auto& d : body.deletions) note(d.name);
    for (const auto& u : body.upsertions) note(u.name);
  }
  auto answer = [req, users](const cluster::pb::ControllerResponse& r) {
    std::map<std::string, const cluster::pb::UserResult*> refused;
    for (const auto& u : r.users()) refused.emplace(u.user(), &u);
    kafka::AlterUserScramCredentialsResponse resp;
    for (const auto& user : users) {
      Result out;
      out.user = user;
      if (auto it = refused.find(user); it != refused.end()) {
        out.error_code = static_cast<int16_t>(it->second->error_code());
        out.error_message = it->second->error_message();
      } else if (r.error_code() != 0) {
        out.error_code = static_cast<int16_t>(r.error_code());
        out.error_message = r.error_message();
      }
      resp.results.push_back(std::move(out));
    }
    respond(*req, resp);
  };
  if (!allowed(*req, Operation::kAlter, ResourceType::kCluster, cluster::acl::kClusterName)) {
    cluster::pb::ControllerResponse denied;
    denied.set_error_code(code(ErrorCode::kClusterAuthorizationFailed));
    denied.set_error_message("ALTER on the cluster is needed to alter credentials");
    answer(denied);
    return;
  }
  if (users.empty()) {
    answer(cluster::pb::ControllerResponse{});
    return;
  }
  cluster::pb::ControllerRequest creq;
  auto* alter = creq.mutable_alter_scram_credentials();
  for (const auto& d : body.deletions) {
    auto* del = alter->add_deletions();
    del->set_user(d.name);
    del->set_mechanism(d.mechanism);
  }
  for (const auto& u : body.upsertions) {
    auto* up = alter->add_upsertions();
    up->set_user(u.name);
    auto* pc = up->mutable_credential();
    pc->set_mechanism(u.mechanism);
    pc->set_iterations(u.iterations);
    pc->set_salt(bytes_text(u.salt));
    // Without a known mechanism or a salted password the keys stay empty: the controller
    // refuses the change (UNSUPPORTED_SASL_MECHANISM, UNACCEPTABLE_CREDENTIAL).
    if (cluster::scram::known_mechanism(u.mechanism) && !u.salted_password.empty()) {
      const auto hash = u.mechanism == cluster::scram::kSha256 ? sasl::ScramHash::kSha256
                                                               : sasl::ScramHash::kSha512;
      auto c = sasl::credential_from_salted(hash, bytes_text(u.salted_password), {}, 0);
      pc->set_stored_key(std::move(c.stored_key));
      pc->set_server_key(std::move(c.server_key));
    }
  }
  cluster_->request(std::move(creq), std::chrono::seconds(10),
                    [answer, named = users.size()](cluster::pb::ControllerResponse r) {
                      const size_t refused = static_cast<size_t>(r.users_size());
                      if (r.error_code() == 0 && refused < named) {
                        spdlog::info("SCRAM credentials changed for {} user(s), {} refused",
                                     named - refused, refused);
                      }
                      answer(r);
                    });
}

}  // namespace sluice::broker
