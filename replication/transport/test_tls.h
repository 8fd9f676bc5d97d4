// Test support: a throw-away certificate authority made with OpenSSL's C API, and broker
// certificates it signs, written as PEM files to a directory (nothing committed, no openssl
// command needed). EC P-256 keys, valid from an hour ago for a day.
#pragma once

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "replication/transport/tls.h"

namespace sluice::transport::testing {

class TestCa {
 public:
  // A CA named `name`; its certificate is <dir>/<name>-ca.pem.
  TestCa(std::string dir, std::string name) : dir_(std::move(dir)), name_(std::move(name)) {
    key_.reset(EVP_EC_gen("P-256"));
    cert_.reset(make_cert(key_.get(), name_ + " CA", nullptr, true));
    write_cert(cert_.get(), ca_path());
  }

  std::string ca_path() const { return dir_ + "/" + name_ + "-ca.pem"; }

  // A certificate for `cn` signed by this CA (both client and server use: no key usage
  // extensions), with its key: <dir>/<name>-<cn>.pem and .key. Returns the files, CA included.
  TlsFiles issue(const std::string& cn) const {
    std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(EVP_EC_gen("P-256"), EVP_PKEY_free);
    std::unique_ptr<X509, decltype(&X509_free)> cert(make_cert(key.get(), cn, this, false),
                                                     X509_free);
    TlsFiles files{.certificate = dir_ + "/" + name_ + "-" + cn + ".pem",
                   .key = dir_ + "/" + name_ + "-" + cn + ".key",
                   .ca = ca_path()};
    write_cert(cert.get(), files.certificate);
    FILE* f = std::fopen(files.key.c_str(), "w");
    if (f == nullptr ||
        PEM_write_PrivateKey(f, key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1) {
      std::abort();
    }
    std::fclose(f);
    return files;
  }

 private:
  X509* make_cert(EVP_PKEY* key, const std::string& cn, const TestCa* issuer, bool ca) const {
    X509* cert = X509_new();
    X509_set_version(cert, 2);
    static long serial = 1;
    ASN1_INTEGER_set(X509_get_serialNumber(cert), serial++);
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), 24 * 3600);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("Sluice test"), -1, -1, 0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
    X509* signer = issuer ? issuer->cert_.get() : cert;
    X509_set_issuer_name(cert, X509_get_subject_name(signer));
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, signer, cert, nullptr, nullptr, 0);
    add_ext(cert, &ctx, NID_basic_constraints, ca ? "critical,CA:TRUE" : "CA:FALSE");
    if (ca) add_ext(cert, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
    add_ext(cert, &ctx, NID_subject_key_identifier, "hash");
    if (!ca) add_ext(cert, &ctx, NID_authority_key_identifier, "keyid");
    if (X509_sign(cert, issuer ? issuer->key_.get() : key, EVP_sha256()) == 0) std::abort();
    return cert;
  }
  static void add_ext(X509* cert, X509V3_CTX* ctx, int nid, const char* value) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, ctx, nid, value);
    if (ext == nullptr) std::abort();
    X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
  }
  static void write_cert(X509* cert, const std::string& path) {
    FILE* f = std::fopen(path.c_str(), "w");
    if (f == nullptr || PEM_write_X509(f, cert) != 1) std::abort();
    std::fclose(f);
  }

  std::string dir_, name_;
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key_{nullptr, EVP_PKEY_free};
  std::unique_ptr<X509, decltype(&X509_free)> cert_{nullptr, X509_free};
};

}  // namespace sluice::transport::testing
