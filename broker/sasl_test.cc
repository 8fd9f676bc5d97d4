#include "broker/sasl.h"

#include <gtest/gtest.h>

namespace sluice::broker::sasl {
namespace {

ScramServer::Lookup one_user(std::string user, ScramCredential c) {
  return [user, c](const std::string& name) -> std::optional<ScramCredential> {
    if (name == user) return c;
    return std::nullopt;
  };
}

// RFC 7677 section 3: the SCRAM-SHA-256 example exchange, byte for byte.
TEST(Scram, Rfc7677Example) {
  auto salt = base64_decode("W22ZaJ0SNY7soEsUEjb6gQ==");
  ASSERT_TRUE(salt);
  auto cred = make_credential(ScramHash::kSha256, "pencil", 4096, *salt);
  ScramServer server(ScramHash::kSha256, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
  auto first = server.first("n,,n=user,r=rOprNGfwEbeRWgbNEkqO", one_user("user", cred));
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_EQ(*first,
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,"
            "i=4096");
  auto last = server.final(
      "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
      "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
  ASSERT_TRUE(last) << last.error().message;
  EXPECT_EQ(*last, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
  EXPECT_EQ(server.user(), "user");
}

TEST(Scram, WrongProofUnknownUserAndBadNonceFail) {
  auto salt = base64_decode("W22ZaJ0SNY7soEsUEjb6gQ==");
  auto cred = make_credential(ScramHash::kSha256, "pencil", 4096, *salt);
  const std::string nonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
  const std::string full = "rOprNGfwEbeRWgbNEkqO" + nonce;
  {
    ScramServer server(ScramHash::kSha256, nonce);
    ASSERT_TRUE(server.first("n,,n=user,r=rOprNGfwEbeRWgbNEkqO", one_user("user", cred)));
    auto last = server.final("c=biws,r=" + full + ",p=eHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
    EXPECT_FALSE(last);
  }
  {  // an unknown user gets a salt too, and fails only at the end
    ScramServer server(ScramHash::kSha256, nonce);
    auto first = server.first("n,,n=nobody,r=rOprNGfwEbeRWgbNEkqO", one_user("user", cred));
    ASSERT_TRUE(first);
    EXPECT_NE(first->find(",s="), std::string::npos);
    EXPECT_FALSE(server.final("c=biws,r=" + full + ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="));
  }
  {
    ScramServer server(ScramHash::kSha256, nonce);
    ASSERT_TRUE(server.first("n,,n=user,r=rOprNGfwEbeRWgbNEkqO", one_user("user", cred)));
    EXPECT_FALSE(server.final("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="));
    EXPECT_FALSE(server.final("c=biws,r=" + full + ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="))
        << "a second final is out of order";
  }
}

TEST(Scram, ParsesClientFirst) {
  auto m = parse_client_first("n,a=al=2Cice,n=al=2Cice,r=abc,ext=1");
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_EQ(m->user, "al,ice");
  EXPECT_EQ(m->gs2_header, "n,a=al=2Cice,");
  EXPECT_EQ(m->bare, "n=al=2Cice,r=abc,ext=1");
  for (const char* bad : {"", "n", "n,,", "p=tls-unique,,n=u,r=x", "n,,n=u", "n,,r=x,n=u",
                          "n,,n=u=4,r=x", "n,,n=,r=x", "n,,m=1,n=u,r=x", "n,a=v,n=u,r=x",
                          "n,,n=u,r=", "n,,n=u,r=a\x01"}) {
    EXPECT_FALSE(parse_client_first(bad)) << bad;
  }
}

TEST(Scram, ParsesClientFinal) {
  auto m = parse_client_final("c=biws,r=abc,p=AAAA");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->channel_binding, "n,,");
  EXPECT_EQ(m->without_proof, "c=biws,r=abc");
  EXPECT_EQ(m->proof, std::string(3, '\0'));
  for (const char* bad : {"", "c=biws", "c=biws,r=abc", "c=b!ws,r=abc,p=AAAA", "r=abc,c=biws,p=AAAA",
                          "c=biws,r=abc,p=AAA", "c=biws,r=abc,p=A=AA"}) {
    EXPECT_FALSE(parse_client_final(bad)) << bad;
  }
}

TEST(Scram, CredentialsVerifyPasswordsAndSaltDiffers) {
  for (ScramHash h : {ScramHash::kSha256, ScramHash::kSha512}) {
    auto a = make_credential(h, "secret", 4096);
    auto b = make_credential(h, "secret", 4096);
    EXPECT_NE(a.salt, b.salt);
    EXPECT_NE(a.stored_key, b.stored_key);
    EXPECT_TRUE(verify_password(h, a, "secret"));
    EXPECT_FALSE(verify_password(h, a, "Secret"));
    EXPECT_EQ(a.stored_key.size(), h == ScramHash::kSha256 ? 32u : 64u);
  }
}

TEST(Plain, Parses) {
  using namespace std::string_literals;
  auto m = parse_plain("\0alice\0pw"s);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->user, "alice");
  EXPECT_EQ(m->password, "pw");
  EXPECT_TRUE(parse_plain("alice\0alice\0pw"s));
  EXPECT_FALSE(parse_plain("bob\0alice\0pw"s));
  EXPECT_FALSE(parse_plain("alice"s));
  EXPECT_FALSE(parse_plain("\0alice"s));
  EXPECT_FALSE(parse_plain("\0\0pw"s));
  EXPECT_FALSE(parse_plain("\0a\0p\0w"s));
}

TEST(Base64, RoundTrips) {
  for (std::string s : {"", "a", "ab", "abc", "abcd", "\xff\x00\x10"}) {
    auto d = base64_decode(base64_encode(s));
    ASSERT_TRUE(d);
    EXPECT_EQ(*d, s);
  }
  EXPECT_EQ(base64_encode("n,,"), "biws");
  EXPECT_FALSE(base64_decode("a"));
  EXPECT_FALSE(base64_decode("a=bc"));
}

// The client side of RFC 7677's example: the same client-final, byte for byte, and the
// server's signature accepted.
TEST(ScramClient, Rfc7677Example) {
  ScramClient client(ScramHash::kSha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
  EXPECT_EQ(client.first(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
  auto last = client.final(
      "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
  ASSERT_TRUE(last) << last.error().message;
  EXPECT_EQ(*last,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
            "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
  EXPECT_TRUE(client.verify("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="));
}

TEST(ScramClient, AgainstTheServerBothHashes) {
  for (ScramHash hash : {ScramHash::kSha256, ScramHash::kSha512}) {
    auto cred = make_credential(hash, "s3cret", 4096);
    for (const std::string password : {"s3cret", "wrong"}) {
      ScramServer server(hash);
      ScramClient client(hash, "a,b=c", password);
      auto first = server.first(client.first(), one_user("a,b=c", cred));
      ASSERT_TRUE(first) << first.error().message;
      auto client_final = client.final(*first);
      ASSERT_TRUE(client_final) << client_final.error().message;
      auto server_final = server.final(*client_final);
      EXPECT_EQ(static_cast<bool>(server_final), password == "s3cret");
      if (server_final) {
        EXPECT_TRUE(client.verify(*server_final));
      }
    }
  }
}

TEST(ScramClient, RefusesABadServer) {
  const std::string good =
      "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
  auto answer = [](std::string server_first) {
    ScramClient client(ScramHash::kSha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
    client.first();
    return client.final(server_first);
  };
  EXPECT_TRUE(answer(good));
  EXPECT_FALSE(answer("r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"));  // nonce
  EXPECT_FALSE(answer("r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"));  // no server part
  EXPECT_FALSE(answer("r=rOprNGfwEbeRWgbNEkqOx,s=not base64,i=4096"));
  EXPECT_FALSE(answer("r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=100"));
  EXPECT_FALSE(answer("r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=999999999"));
  EXPECT_FALSE(answer("e=other-error"));
  EXPECT_FALSE(answer("garbage"));
  // A server that does not know the credential cannot produce the signature.
  ScramClient client(ScramHash::kSha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
  client.first();
  ASSERT_TRUE(client.final(good));
  EXPECT_FALSE(client.verify("v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="));
  ScramClient out_of_order(ScramHash::kSha256, "user", "pencil");
  EXPECT_FALSE(out_of_order.final(good));
}

}  // namespace
}  // namespace sluice::broker::sasl
