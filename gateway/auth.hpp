// Who may read what: client keys (known by their SHA-256 only) mapped to accounts, and the
// admin token for state-changing admin routes. Comparisons are constant-time.
#pragma once

#include "config/settings.hpp"

#include <boost/beast/http/fields.hpp>

#include <array>
#include <iosfwd>
#include <string>
#include <string_view>
#include <vector>

namespace imagegate::gateway {

/// SHA-256 of `data`.
std::array<unsigned char, 32> sha256(std::string_view data);

/// The credential of `Authorization: Bearer <credential>`, or empty when the header is absent,
/// repeated, or not a Bearer credential.
std::string_view bearer_credential(const boost::beast::http::fields& headers);

/// Decides, before any cache lookup or flight, whether a request may read an account.
/// Immutable after construction; thread-safe.
class authorizer {
public:
    enum class verdict {
        allowed,       ///< no keys configured (anonymous), or the key may read the account
        unauthorized,  ///< keys are configured and none was presented, or it is unknown (401)
        forbidden,     ///< a known key that may not read this account (403)
    };

    explicit authorizer(const std::vector<config::client_key>& keys);

    /// With no keys configured every request is allowed, and whatever Authorization it sent
    /// is ignored (official SDKs always send one); it is never forwarded upstream.
    verdict check(const boost::beast::http::fields* headers, std::string_view account) const;

    bool has_keys() const noexcept { return !keys_.empty(); }

private:
    struct entry {
        std::array<unsigned char, 32> digest;
        std::vector<std::string> accounts;  // empty with all_accounts
        bool all_accounts = false;
    };
    std::vector<entry> keys_;
};

std::ostream& operator<<(std::ostream& os, authorizer::verdict v);

/// Checks `Authorization: Bearer <admin token>` in constant time. An empty `expected` token
/// refuses every request.
bool is_admin(const boost::beast::http::fields* headers, std::string_view expected);

}  // namespace imagegate::gateway
