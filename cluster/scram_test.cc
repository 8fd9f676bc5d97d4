#include "cluster/scram.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "cluster/metadata.h"

namespace sluice::cluster {
namespace {

using kafka::ErrorCode;

pb::AlterScramCredentials::Upsertion upsert(const std::string& user, int32_t mechanism,
                                            int32_t iterations = 4096,
                                            const std::string& key = "k") {
  pb::AlterScramCredentials::Upsertion u;
  u.set_user(user);
  auto* c = u.mutable_credential();
  c->set_mechanism(mechanism);
  c->set_iterations(iterations);
  c->set_salt("salt-" + user);
  c->set_stored_key("stored-" + key);
  c->set_server_key("server-" + key);
  return u;
}

pb::AlterScramCredentials::Deletion deletion(const std::string& user, int32_t mechanism) {
  pb::AlterScramCredentials::Deletion d;
  d.set_user(user);
  d.set_mechanism(mechanism);
  return d;
}

pb::Record record(const pb::AlterScramCredentials& change) {
  pb::Record r;
  *r.mutable_alter_scram_credentials() = change;
  return r;
}

std::vector<int32_t> mechanisms(const pb::Image& img, const std::string& user) {
  std::vector<int32_t> out;
  auto it = img.users().find(user);
  if (it == img.users().end()) return out;
  for (const auto& c : it->second.credentials()) out.push_back(c.mechanism());
  return out;
}

TEST(Scram, ApplyUpsertsReplacesAndDeletes) {
  MetadataState s;
  pb::AlterScramCredentials a;
  *a.add_upsertions() = upsert("bob", scram::kSha256);
  *a.add_upsertions() = upsert("bob", scram::kSha512, 8192);
  *a.add_upsertions() = upsert("carl", scram::kSha512);
  ASSERT_TRUE(s.apply(1, record(a)).ok());
  EXPECT_EQ(mechanisms(s.image(), "bob"), (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(mechanisms(s.image(), "carl"), (std::vector<int32_t>{2}));

  pb::AlterScramCredentials b;  // a new password replaces the credential of that mechanism
  *b.add_upsertions() = upsert("bob", scram::kSha512, 16384, "new");
  *b.add_deletions() = deletion("bob", scram::kSha256);
  ASSERT_TRUE(s.apply(2, record(b)).ok());
  const auto& bob = s.image().users().at("bob");
  ASSERT_EQ(bob.credentials_size(), 1);
  EXPECT_EQ(bob.credentials(0).mechanism(), scram::kSha512);
  EXPECT_EQ(bob.credentials(0).iterations(), 16384);
  EXPECT_EQ(bob.credentials(0).stored_key(), "stored-new");

  pb::AlterScramCredentials c;  // the last credential gone: the user is gone
  *c.add_deletions() = deletion("carl", scram::kSha512);
  *c.add_deletions() = deletion("nobody", scram::kSha512);  // nothing to delete: no change
  ASSERT_TRUE(s.apply(3, record(c)).ok());
  EXPECT_FALSE(s.image().users().count("carl"));
  EXPECT_FALSE(s.image().users().count("nobody"));

  // In the snapshot: a restored state has them.
  MetadataState t;
  ASSERT_TRUE(t.restore(s.serialize()));
  EXPECT_EQ(t.image().users().at("bob").credentials(0).server_key(), "server-new");
}

TEST(Scram, ApplySkipsWhatCheckRefuses) {
  MetadataState s;
  pb::AlterScramCredentials a;
  *a.add_upsertions() = upsert("bad-mech", 3);
  *a.add_upsertions() = upsert("few", scram::kSha256, 100);
  *a.add_upsertions() = upsert("", scram::kSha256);
  ASSERT_TRUE(s.apply(1, record(a)).ok());
  EXPECT_EQ(s.image().users_size(), 0);
}

TEST(Scram, CheckJudgesEachUserAsKafka) {
  MetadataState s;
  pb::AlterScramCredentials setup;
  *setup.add_upsertions() = upsert("bob", scram::kSha256);
  ASSERT_TRUE(s.apply(1, record(setup)).ok());

  pb::AlterScramCredentials in;
  *in.add_deletions() = deletion("bob", scram::kSha256);         // ok
  *in.add_deletions() = deletion("ghost", scram::kSha256);       // RESOURCE_NOT_FOUND
  *in.add_deletions() = deletion("mech", 7);                     // UNSUPPORTED_SASL_MECHANISM
  *in.add_upsertions() = upsert("", scram::kSha512);             // UNACCEPTABLE_CREDENTIAL
  *in.add_upsertions() = upsert("few", scram::kSha512, 4095);    // UNACCEPTABLE_CREDENTIAL
  *in.add_upsertions() = upsert("many", scram::kSha512, 16385);  // UNACCEPTABLE_CREDENTIAL
  *in.add_upsertions() = upsert("twice", scram::kSha512);
  *in.add_upsertions() = upsert("twice", scram::kSha512);  // DUPLICATE_RESOURCE
  *in.add_upsertions() = upsert("both", scram::kSha256);   // two mechanisms: fine
  *in.add_upsertions() = upsert("both", scram::kSha512);
  *in.add_upsertions() = upsert("ghost", scram::kSha512);  // refused with its deletion
  auto empty_salt = upsert("nosalt", scram::kSha256);
  empty_salt.mutable_credential()->clear_salt();
  *in.add_upsertions() = empty_salt;  // UNACCEPTABLE_CREDENTIAL
  auto long_salt = upsert("longsalt", scram::kSha256);
  long_salt.mutable_credential()->set_salt(std::string(scram::kSaltMax + 1, 's'));
  *in.add_upsertions() = long_salt;               // UNACCEPTABLE_CREDENTIAL
  auto no_key = upsert("nokey", scram::kSha256);  // no salted password was sent
  no_key.mutable_credential()->clear_stored_key();
  *in.add_upsertions() = no_key;  // UNACCEPTABLE_CREDENTIAL

  pb::AlterScramCredentials accepted;
  auto refused = scram::check(s.image(), in, accepted);
  std::map<std::string, ErrorCode> got;
  for (const auto& r : refused) {
    EXPECT_FALSE(r.message.empty()) << r.user;
    got[r.user] = r.code;
  }
  EXPECT_EQ(got, (std::map<std::string, ErrorCode>{
                     {"ghost", ErrorCode::kResourceNotFound},
                     {"mech", ErrorCode::kUnsupportedSaslMechanism},
                     {"", ErrorCode::kUnacceptableCredential},
                     {"few", ErrorCode::kUnacceptableCredential},
                     {"many", ErrorCode::kUnacceptableCredential},
                     {"twice", ErrorCode::kDuplicateResource},
                     {"nosalt", ErrorCode::kUnacceptableCredential},
                     {"nokey", ErrorCode::kUnacceptableCredential},
                     {"longsalt", ErrorCode::kUnacceptableCredential},
                 }));
  // In the order users first appear.
  ASSERT_EQ(refused.size(), 9u);
  EXPECT_EQ(refused[0].user, "ghost");
  EXPECT_EQ(refused[1].user, "mech");
  ASSERT_EQ(accepted.deletions_size(), 1);
  EXPECT_EQ(accepted.deletions(0).user(), "bob");
  std::vector<std::string> up;
  for (const auto& u : accepted.upsertions()) up.push_back(u.user());
  EXPECT_EQ(up, (std::vector<std::string>{"both", "both"}));

  // A deletion and an upsertion of the same credential in one request: DUPLICATE_RESOURCE.
  pb::AlterScramCredentials same;
  *same.add_deletions() = deletion("bob", scram::kSha256);
  *same.add_upsertions() = upsert("bob", scram::kSha256);
  refused = scram::check(s.image(), same, accepted);
  ASSERT_EQ(refused.size(), 1u);
  EXPECT_EQ(refused[0].code, ErrorCode::kDuplicateResource);
  EXPECT_EQ(accepted.deletions_size() + accepted.upsertions_size(), 0);
}

}  // namespace
}  // namespace sluice::cluster
