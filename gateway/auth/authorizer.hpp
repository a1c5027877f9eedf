// Who may read what: client keys (known by their SHA-256 only) mapped to accounts, the
// admin token for state-changing admin routes (comparisons are constant-time), and, in
// passthrough mode, callers' own credentials and the upstream's proofs of what they may read.
#pragma once

#include "config/settings.hpp"
#include "gateway/core/digest_lru.hpp"
#include "gateway/core/errc.hpp"
#include "gateway/core/snapshot.hpp"

#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/verb.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace imagegate::upstream {
struct credential;
}

namespace imagegate::gateway {

/// SHA-256 of `data`.
std::array<unsigned char, 32> sha256(std::string_view data);

/// The credential of `Authorization: Bearer <credential>`, or empty when the header is absent,
/// repeated, or not a Bearer credential.
std::string_view bearer_credential(const boost::beast::http::fields& headers);

/// Whether a request may be forwarded upstream with the gateway's token (token mode).
enum class forward_verdict {
    allowed,
    unauthorized,       ///< keys are configured and the caller presented an unknown one (401)
    not_granted,        ///< the caller's grant does not include the method (403)
    forbidden_account,  ///< the path is outside the key's accounts or prefixes (403)
};

std::ostream& operator<<(std::ostream& os, forward_verdict v);

/// The bit of `m` in a set of forwardable methods (GET HEAD POST PUT PATCH DELETE); 0 for
/// every other method, which no grant can name.
std::uint32_t forward_method_bit(boost::beast::http::verb m) noexcept;
/// The set of the named methods (spelled as config::forward_methods()); others add nothing.
std::uint32_t forward_method_set(const std::vector<std::string>& methods);

/// check_forward()'s verdict with what to answer a refusal: `error` (unauthorized,
/// forward_not_granted, forward_anonymous_not_granted or forward_path_forbidden; unset when
/// allowed) and `message`, the envelope message naming the method and the setting that would
/// allow the request. Use error_envelope(to_envelope_code(error), message).
struct forward_decision {
    forward_verdict verdict = forward_verdict::allowed;
    errc error{};
    std::string message;
};

/// Decides, before any cache lookup or flight, whether a request may read an account, and
/// whether a request may be forwarded with the gateway's token.
/// Thread-safe. The key table is an immutable snapshot (core/snapshot.hpp): replace_keys()
/// (a configuration reload) publishes a new one, and every check() that starts after it
/// returns sees the new keys; a check() already running finishes with the table it loaded.
class authorizer {
public:
    enum class verdict {
        allowed,       ///< no keys configured (anonymous), or the key may read the account
        unauthorized,  ///< keys are configured and none was presented, or it is unknown (401)
        forbidden,     ///< a known key that may not read this account (403)
    };

    /// `anonymous_methods`: forward.anonymous_methods (validated by config::check).
    explicit authorizer(const std::vector<config::client_key>& keys,
                        const std::vector<std::string>& anonymous_methods = {});

    /// With no keys configured every request is allowed, and whatever Authorization it sent
    /// is ignored (official SDKs always send one); it is never forwarded upstream.
    verdict check(const boost::beast::http::fields* headers, std::string_view account) const;

    /// Token mode only (in passthrough the caller's own credential goes upstream): may this
    /// request go upstream with the gateway's token? `path` is the path after the upstream
    /// base path (/client/v4), without the query. A caller that presents a known client key
    /// forwards the methods of its `forward` grant, on `/accounts/{one of its accounts}/...`
    /// (any path with "*"), within its `forward_prefixes` when it has any. A caller without
    /// a key (with no keys configured: every caller; its Authorization is ignored) forwards
    /// forward.anonymous_methods, and only from a loopback peer. With keys configured an
    /// unknown key is 401, as for reads. A path that could leave its prefix once decoded
    /// (config::path_may_escape) is never allowed.
    forward_verdict check_forward(const boost::beast::http::fields* headers,
                                  boost::beast::http::verb method, std::string_view path,
                                  bool loopback_peer) const;
    /// check_forward() with the answer for a refusal.
    forward_decision decide_forward(const boost::beast::http::fields* headers,
                                    boost::beast::http::verb method, std::string_view path,
                                    bool loopback_peer) const;

    /// Publishes a new key table and anonymous grant (a reload); any thread.
    void replace_keys(const std::vector<config::client_key>& keys,
                      const std::vector<std::string>& anonymous_methods = {});

    bool has_keys() const noexcept { return has_keys_.load(std::memory_order_acquire); }

private:
    struct entry {
        std::array<unsigned char, 32> digest;
        std::vector<std::string> accounts;  // empty with all_accounts
        bool all_accounts = false;
        std::uint32_t forward_methods = 0;  // method_bit() of each granted method
        std::vector<std::string> forward_prefixes;
    };
    struct table {
        std::vector<entry> keys;
        std::uint32_t anonymous_methods = 0;
    };
    static std::shared_ptr<const table> make_table(const std::vector<config::client_key>& keys,
                                                   const std::vector<std::string>& anonymous);
    /// The entry whose digest is SHA-256(`cred`), compared in constant time; or nullptr.
    static const entry* find_key(const table& t, std::string_view cred);
    snapshot<table> keys_{std::make_shared<const table>()};
    // Whether keys_ is non-empty: anonymous gateways skip loading the snapshot per request.
    std::atomic<bool> has_keys_{false};
};

std::ostream& operator<<(std::ostream& os, authorizer::verdict v);

/// A caller's credential in passthrough mode, read from its request headers.
struct caller_credential {
    enum class status {
        ok,         ///< one well-formed credential: `cred` and `digest` are set
        missing,    ///< no Authorization and no X-Auth-Email/X-Auth-Key (401)
        malformed,  ///< repeated or conflicting headers, a half pair, a non-Bearer scheme,
                    ///< an empty value or bytes outside the allowed set (400)
    };
    status state = status::missing;
    /// Exactly what is forwarded upstream. Never logged.
    std::shared_ptr<const upstream::credential> cred;
    /// SHA-256 over the credential's kind and value(s): what the gateway remembers.
    credential_digest digest{};
};

/// Reads `Authorization: Bearer <token>` (RFC 6750 b64token) or the pair `X-Auth-Email` +
/// `X-Auth-Key` (visible ASCII), each at most once and not both kinds, every value at most
/// 1024 bytes. Nothing else of the request is looked at.
caller_credential read_caller_credential(const boost::beast::http::fields* headers);

std::ostream& operator<<(std::ostream& os, caller_credential::status s);

/// Passthrough mode: which (credential digest, account) pairs the upstream accepted lately.
/// A cached entry of an account is answered to a credential only while such a proof lasts.
/// Holds digests, never credentials; at most `max_credentials` of them (the least recently
/// proved goes first) and at most `max_accounts` accounts each (the earliest expiring goes).
/// Owned by the image handler. Thread-safe: every member holds `mu_` for a few operations.
class proof_cache {
public:
    using time_point = std::chrono::steady_clock::time_point;

    proof_cache(std::chrono::steady_clock::duration ttl, std::size_t max_credentials,
                std::size_t max_accounts = 64);

    /// The upstream accepted `cred` for `account` at `now` (a 200 or a 404 code 5404).
    void prove(const credential_digest& cred, std::string_view account, time_point now);
    /// Whether a proof of (`cred`, `account`) lasts at `now`.
    bool is_proven(const credential_digest& cred, std::string_view account, time_point now);
    /// Whether any proof of `cred` lasts at `now`: the upstream accepted it lately, for
    /// some account (it is not a made-up credential).
    bool has_any(const credential_digest& cred, time_point now) const;
    /// The upstream refused `cred` for `account` (403): its proof, if any, is dropped.
    void revoke(const credential_digest& cred, std::string_view account);
    /// The upstream refused `cred` outright (401): every proof of it is dropped.
    void revoke_all(const credential_digest& cred);

    /// Credentials with at least one remembered proof (expired ones included until swept).
    std::size_t size() const;

private:
    struct proof {
        std::string account;
        time_point expires;
    };
    const std::chrono::steady_clock::duration ttl_;
    const std::size_t max_credentials_;
    const std::size_t max_accounts_;
    mutable std::mutex mu_;
    digest_lru<std::vector<proof>> proofs_;  // guarded by mu_; order = last proof
};

/// Checks `Authorization: Bearer <admin token>` in constant time. An empty `expected` token
/// refuses every request.
bool is_admin(const boost::beast::http::fields* headers, std::string_view expected);

}  // namespace imagegate::gateway
