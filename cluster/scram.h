// SCRAM credentials in the cluster metadata (docs/security.md "Users"): the controller's check
// of an AlterScramCredentials change against the image (Kafka's AlterUserScramCredentials rules,
// judged per user: one refused change of a user refuses all of that user's changes), and its
// application to the image. Pure functions: no I/O, no threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "cluster/cluster.pb.h"
#include "protocol/error_codes.h"

namespace sluice::cluster::scram {

// Kafka's ScramMechanism values.
constexpr int32_t kSha256 = 1;
constexpr int32_t kSha512 = 2;
// Kafka's bounds (ScramMechanism.minIterations, ScramControlManager.MAX_ITERATIONS).
constexpr int32_t kIterationsMin = 4096;
constexpr int32_t kIterationsMax = 16384;
// Longer salts are refused (Kafka's clients send 24 to 32 bytes; every image holds them).
constexpr size_t kSaltMax = 1024;

inline bool known_mechanism(int32_t m) { return m == kSha256 || m == kSha512; }

struct Refusal {
  std::string user;
  kafka::ErrorCode code = kafka::ErrorCode::kNone;
  std::string message;
};

// Splits `change` into the changes of users with no error (`accepted`, to be recorded) and one
// refusal per other user, in the order users first appear. Per change, as Kafka checks: an
// empty name (UNACCEPTABLE_CREDENTIAL), an unknown mechanism (UNSUPPORTED_SASL_MECHANISM),
// iterations outside 4096..16384, an upsertion without salt or keys or with a salt longer than
// kSaltMax (UNACCEPTABLE_CREDENTIAL),
// the same user and mechanism twice in one request (DUPLICATE_RESOURCE, as Kafka with
// ZooKeeper), deleting a credential `img` does not have (RESOURCE_NOT_FOUND).
std::vector<Refusal> check(const pb::Image& img, const pb::AlterScramCredentials& change,
                           pb::AlterScramCredentials& accepted);

// Applies a recorded change: deletions first, then upsertions (a user left without a
// credential is removed). Changes that check() would refuse for their shape are skipped, so
// the apply is the same on every broker whatever a record holds.
void apply(pb::Image& img, const pb::AlterScramCredentials& change);

}  // namespace sluice::cluster::scram
