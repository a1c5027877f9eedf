// Streaming SHA-256 (OpenSSL EVP) for the emulator: request bodies and uploaded files are
// hashed as they arrive, so a test can check the exact bytes without anyone keeping them.
#pragma once

#include <memory>
#include <string>
#include <string_view>

namespace imagegate::testing {

/// One running SHA-256. Owned by whoever feeds it; not thread-safe.
class sha256 {
 public:
  sha256();
  ~sha256();
  sha256(sha256&&) noexcept;
  sha256& operator=(sha256&&) noexcept;

  void update(std::string_view bytes);
  /// Lowercase hex of the digest of everything fed so far; the hash then starts over.
  std::string hex_digest();

  /// The digest of `bytes` in one call.
  static std::string of(std::string_view bytes);

 private:
  struct ctx_deleter {
    void operator()(void* p) const noexcept;
  };
  std::unique_ptr<void, ctx_deleter> ctx_;
};

}  // namespace imagegate::testing
