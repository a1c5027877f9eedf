// OpenSSL 3 EVP behind testing::sha256.
#include "tests/emulator/digest.hpp"

#include <openssl/evp.h>

#include <stdexcept>

namespace imagegate::testing {

namespace {

void init(EVP_MD_CTX* ctx) {
  if (ctx == nullptr || EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("sha256: EVP_DigestInit_ex failed");
  }
}

}  // namespace

void sha256::ctx_deleter::operator()(void* p) const noexcept {
  EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(p));
}

sha256::sha256() : ctx_(EVP_MD_CTX_new()) { init(static_cast<EVP_MD_CTX*>(ctx_.get())); }

sha256::~sha256() = default;
sha256::sha256(sha256&&) noexcept = default;
sha256& sha256::operator=(sha256&&) noexcept = default;

void sha256::update(std::string_view bytes) {
  if (!bytes.empty() &&
      EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_.get()), bytes.data(), bytes.size()) != 1) {
    throw std::runtime_error("sha256: EVP_DigestUpdate failed");
  }
}

std::string sha256::hex_digest() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  auto* ctx = static_cast<EVP_MD_CTX*>(ctx_.get());
  if (EVP_DigestFinal_ex(ctx, md, &n) != 1) {
    throw std::runtime_error("sha256: EVP_DigestFinal_ex failed");
  }
  init(ctx);
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  for (unsigned int i = 0; i < n; ++i) {
    out += digits[md[i] >> 4];
    out += digits[md[i] & 0xf];
  }
  return out;
}

std::string sha256::of(std::string_view bytes) {
  sha256 h;
  h.update(bytes);
  return h.hex_digest();
}

}  // namespace imagegate::testing
