// OpenSSL 3 EVP/X509 code behind make_test_pki(). Every handle is owned by a unique_ptr
// so an exception half-way through leaks nothing (ASan runs the tests).
#include "tests/emulator/pki.hpp"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <fstream>
#include <memory>
#include <stdexcept>

namespace imagegate::testing {
namespace {

template <auto Free>
struct deleter {
  template <class T>
  void operator()(T* p) const noexcept {
    Free(p);
  }
};

using pkey_ptr = std::unique_ptr<EVP_PKEY, deleter<EVP_PKEY_free>>;
using x509_ptr = std::unique_ptr<X509, deleter<X509_free>>;
using bio_ptr = std::unique_ptr<BIO, deleter<BIO_free>>;
using bn_ptr = std::unique_ptr<BIGNUM, deleter<BN_free>>;
using ext_ptr = std::unique_ptr<X509_EXTENSION, deleter<X509_EXTENSION_free>>;

[[noreturn]] void fail(const char* what) {
  std::string msg = std::string("test pki: ") + what;
  // Drain the whole queue so a later, unrelated OpenSSL caller does not see our errors.
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    msg += ": ";
    msg += buf;
  }
  throw std::runtime_error(msg);
}

void check(int rc, const char* what) {
  if (rc <= 0) {
    fail(what);
  }
}

template <class T>
T* check_ptr(T* p, const char* what) {
  if (p == nullptr) {
    fail(what);
  }
  return p;
}

pkey_ptr make_key() {
  // OpenSSL 3 one-shot keygen; "P-256" is the prime256v1 curve.
  return pkey_ptr(check_ptr(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"), "EC keygen"));
}

void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  ext_ptr ext(check_ptr(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value), "extension"));
  check(X509_add_ext(cert, ext.get(), -1), "add extension");
}

// A fresh certificate with a random 127-bit serial (RFC 5280 §4.1.2.2: positive, ≤ 20 octets)
// and the project-wide validity window.
x509_ptr new_cert(EVP_PKEY* key, const char* common_name) {
  x509_ptr cert(check_ptr(X509_new(), "X509_new"));
  check(X509_set_version(cert.get(), X509_VERSION_3), "set version");

  bn_ptr serial(check_ptr(BN_new(), "BN_new"));
  check(BN_rand(serial.get(), 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY), "BN_rand");
  check_ptr(BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())), "serial");

  check_ptr(X509_gmtime_adj(X509_getm_notBefore(cert.get()), -60L * 60), "notBefore");
  check_ptr(X509_gmtime_adj(X509_getm_notAfter(cert.get()), 2L * 24 * 60 * 60), "notAfter");

  X509_NAME* name = X509_get_subject_name(cert.get());
  check(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                   reinterpret_cast<const unsigned char*>("imagegate tests"), -1,
                                   -1, 0),
        "subject O");
  check(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                   reinterpret_cast<const unsigned char*>(common_name), -1, -1, 0),
        "subject CN");
  check(X509_set_pubkey(cert.get(), key), "set pubkey");
  return cert;
}

std::string to_pem(X509* cert) {
  bio_ptr bio(check_ptr(BIO_new(BIO_s_mem()), "BIO_new"));
  check(PEM_write_bio_X509(bio.get(), cert), "PEM_write_bio_X509");
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

std::string to_pem(EVP_PKEY* key) {
  bio_ptr bio(check_ptr(BIO_new(BIO_s_mem()), "BIO_new"));
  check(PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr),
        "PEM_write_bio_PrivateKey");
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

}  // namespace

pki make_test_pki() {
  pkey_ptr ca_key = make_key();
  x509_ptr ca = new_cert(ca_key.get(), "imagegate test CA");
  check(X509_set_issuer_name(ca.get(), X509_get_subject_name(ca.get())), "CA issuer");
  add_ext(ca.get(), ca.get(), NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
  add_ext(ca.get(), ca.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
  add_ext(ca.get(), ca.get(), NID_subject_key_identifier, "hash");
  check(X509_sign(ca.get(), ca_key.get(), EVP_sha256()), "sign CA");

  pkey_ptr leaf_key = make_key();
  x509_ptr leaf = new_cert(leaf_key.get(), "localhost");
  check(X509_set_issuer_name(leaf.get(), X509_get_subject_name(ca.get())), "leaf issuer");
  add_ext(leaf.get(), ca.get(), NID_basic_constraints, "critical,CA:FALSE");
  add_ext(leaf.get(), ca.get(), NID_key_usage, "critical,digitalSignature");
  add_ext(leaf.get(), ca.get(), NID_ext_key_usage, "serverAuth");
  add_ext(leaf.get(), ca.get(), NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1,IP:::1");
  add_ext(leaf.get(), ca.get(), NID_subject_key_identifier, "hash");
  add_ext(leaf.get(), ca.get(), NID_authority_key_identifier, "keyid:always");
  check(X509_sign(leaf.get(), ca_key.get(), EVP_sha256()), "sign leaf");

  return pki{to_pem(ca.get()), to_pem(leaf.get()), to_pem(leaf_key.get())};
}

void write_file(const std::string& path, std::string_view content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  out.close();
  if (!out) {
    throw std::runtime_error("cannot write " + path);
  }
}

}  // namespace imagegate::testing
