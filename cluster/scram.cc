#include "cluster/scram.h"

#include <algorithm>
#include <map>
#include <set>
#include <utility>

namespace sluice::cluster::scram {

using kafka::ErrorCode;

namespace {

bool has(const pb::Image& img, const std::string& user, int32_t mechanism) {
  auto it = img.users().find(user);
  if (it == img.users().end()) return false;
  const auto& creds = it->second.credentials();
  return std::any_of(creds.begin(), creds.end(),
                     [&](const pb::ScramCredential& c) { return c.mechanism() == mechanism; });
}

// Empty when the change's shape is acceptable, else (code, why).
std::pair<ErrorCode, std::string> shape(const std::string& user, int32_t mechanism) {
  if (user.empty()) return {ErrorCode::kUnacceptableCredential, "Username must not be empty"};
  if (!known_mechanism(mechanism)) {
    return {ErrorCode::kUnsupportedSaslMechanism, "Unknown SCRAM mechanism"};
  }
  return {ErrorCode::kNone, {}};
}

std::pair<ErrorCode, std::string> shape(const pb::AlterScramCredentials::Upsertion& u) {
  auto s = shape(u.user(), u.credential().mechanism());
  if (s.first != ErrorCode::kNone) return s;
  const auto& c = u.credential();
  if (c.iterations() < kIterationsMin) {
    return {ErrorCode::kUnacceptableCredential, "Too few iterations"};
  }
  if (c.iterations() > kIterationsMax) {
    return {ErrorCode::kUnacceptableCredential, "Too many iterations"};
  }
  if (c.salt().empty() || c.stored_key().empty() || c.server_key().empty()) {
    return {ErrorCode::kUnacceptableCredential, "The salt or salted password is empty"};
  }
  if (c.salt().size() > kSaltMax) {
    return {ErrorCode::kUnacceptableCredential, "The salt is longer than 1024 bytes"};
  }
  return {ErrorCode::kNone, {}};
}

}  // namespace

std::vector<Refusal> check(const pb::Image& img, const pb::AlterScramCredentials& change,
                           pb::AlterScramCredentials& accepted) {
  std::vector<std::string> order;
  std::map<std::string, std::pair<ErrorCode, std::string>> verdict;
  auto note = [&](const std::string& user) {
    if (verdict.emplace(user, std::pair{ErrorCode::kNone, std::string()}).second) {
      order.push_back(user);
    }
  };
  auto refuse = [&](const std::string& user, std::pair<ErrorCode, std::string> why) {
    auto& v = verdict[user];
    if (v.first == ErrorCode::kNone) v = std::move(why);
  };
  std::set<std::pair<std::string, int32_t>> touched;
  auto twice = [&](const std::string& user, int32_t mechanism) {
    if (touched.insert({user, mechanism}).second) return false;
    refuse(user, {ErrorCode::kDuplicateResource,
                  "A user credential cannot be altered twice in the same request"});
    return true;
  };
  for (const auto& d : change.deletions()) {
    note(d.user());
    if (auto s = shape(d.user(), d.mechanism()); s.first != ErrorCode::kNone) {
      refuse(d.user(), std::move(s));
    } else if (!twice(d.user(), d.mechanism()) && !has(img, d.user(), d.mechanism())) {
      refuse(d.user(), {ErrorCode::kResourceNotFound,
                        "Attempt to delete a user credential that does not exist"});
    }
  }
  for (const auto& u : change.upsertions()) {
    note(u.user());
    if (auto s = shape(u); s.first != ErrorCode::kNone) {
      refuse(u.user(), std::move(s));
    } else {
      twice(u.user(), u.credential().mechanism());
    }
  }
  accepted.Clear();
  for (const auto& d : change.deletions()) {
    if (verdict[d.user()].first == ErrorCode::kNone) *accepted.add_deletions() = d;
  }
  for (const auto& u : change.upsertions()) {
    if (verdict[u.user()].first == ErrorCode::kNone) *accepted.add_upsertions() = u;
  }
  std::vector<Refusal> out;
  for (const auto& user : order) {
    auto& [code, why] = verdict[user];
    if (code != ErrorCode::kNone) out.push_back({user, code, std::move(why)});
  }
  return out;
}

void apply(pb::Image& img, const pb::AlterScramCredentials& change) {
  auto& users = *img.mutable_users();
  for (const auto& d : change.deletions()) {
    auto it = users.find(d.user());
    if (it == users.end()) continue;
    auto* creds = it->second.mutable_credentials();
    auto end = std::remove_if(creds->begin(), creds->end(), [&](const pb::ScramCredential& c) {
      return c.mechanism() == d.mechanism();
    });
    creds->erase(end, creds->end());
    if (creds->empty()) users.erase(it);
  }
  for (const auto& u : change.upsertions()) {
    if (shape(u).first != ErrorCode::kNone) continue;
    auto* creds = users[u.user()].mutable_credentials();
    auto it = std::find_if(creds->begin(), creds->end(), [&](const pb::ScramCredential& c) {
      return c.mechanism() == u.credential().mechanism();
    });
    if (it != creds->end()) {
      *it = u.credential();
    } else {
      *creds->Add() = u.credential();
    }
  }
}

}  // namespace sluice::cluster::scram
