#include "gateway/auth/authorizer.hpp"

#include "gateway/upstream/credential.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
#include <optional>
#include <ostream>
#include <stdexcept>

namespace imagegate::gateway {

namespace http = boost::beast::http;

std::array<unsigned char, 32> sha256(std::string_view data) {
    std::array<unsigned char, 32> out{};
    unsigned int len = 0;
    if (EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr) != 1 ||
        len != out.size()) {
        throw std::runtime_error("SHA-256 failed");
    }
    return out;
}

std::string_view bearer_credential(const http::fields& headers) {
    const auto range = headers.equal_range(http::field::authorization);
    if (range.first == range.second || std::next(range.first) != range.second) {
        return {};
    }
    const std::string_view value(range.first->value().data(), range.first->value().size());
    constexpr std::string_view scheme = "bearer ";
    if (value.size() <= scheme.size()) {
        return {};
    }
    for (std::size_t i = 0; i < scheme.size(); ++i) {
        if (std::tolower(static_cast<unsigned char>(value[i])) != scheme[i]) {
            return {};
        }
    }
    std::string_view cred = value.substr(scheme.size());
    while (!cred.empty() && cred.front() == ' ') {
        cred.remove_prefix(1);
    }
    while (!cred.empty() && cred.back() == ' ') {
        cred.remove_suffix(1);
    }
    return cred;
}

namespace {

std::array<unsigned char, 32> from_hex(std::string_view hex) {
    std::array<unsigned char, 32> out{};
    const auto nibble = [](char c) {
        return static_cast<unsigned char>(c <= '9' ? c - '0' : c - 'a' + 10);
    };
    for (std::size_t i = 0; i < out.size() && 2 * i + 1 < hex.size(); ++i) {
        out[i] = static_cast<unsigned char>(nibble(hex[2 * i]) << 4 | nibble(hex[2 * i + 1]));
    }
    return out;
}

}  // namespace

std::shared_ptr<const authorizer::table> authorizer::make_table(
    const std::vector<config::client_key>& keys, const std::vector<std::string>& anonymous) {
    auto out = std::make_shared<table>();
    for (const auto& k : keys) {
        entry e{from_hex(k.sha256), {}, false, forward_method_set(k.forward), k.forward_prefixes};
        for (const auto& a : k.accounts) {
            if (a == "*") {
                e.all_accounts = true;
            } else {
                e.accounts.push_back(a);
            }
        }
        out->keys.push_back(std::move(e));
    }
    out->anonymous_methods = forward_method_set(anonymous);
    return out;
}

authorizer::authorizer(const std::vector<config::client_key>& keys,
                       const std::vector<std::string>& anonymous_methods) {
    replace_keys(keys, anonymous_methods);
}

void authorizer::replace_keys(const std::vector<config::client_key>& keys,
                              const std::vector<std::string>& anonymous_methods) {
    keys_.store(make_table(keys, anonymous_methods));
    has_keys_.store(!keys.empty(), std::memory_order_release);
}

const authorizer::entry* authorizer::find_key(const table& t, std::string_view cred) {
    // Hash first, then compare against every configured digest without stopping early: the
    // time taken does not depend on which key (if any) matched, nor on how much of it.
    const auto digest = sha256(cred);
    const entry* match = nullptr;
    for (const auto& e : t.keys) {
        const bool equal = CRYPTO_memcmp(e.digest.data(), digest.data(), digest.size()) == 0;
        match = equal ? &e : match;
    }
    return match;
}

authorizer::verdict authorizer::check(const http::fields* headers, std::string_view account) const {
    if (!has_keys_.load(std::memory_order_acquire)) {
        return verdict::allowed;
    }
    const auto keys = keys_.load();
    if (keys->keys.empty()) {
        return verdict::allowed;  // a reload removed the last key just now
    }
    const std::string_view cred = headers != nullptr ? bearer_credential(*headers) : "";
    if (cred.empty()) {
        return verdict::unauthorized;
    }
    const entry* match = find_key(*keys, cred);
    if (match == nullptr) {
        return verdict::unauthorized;
    }
    if (match->all_accounts || std::find(match->accounts.begin(), match->accounts.end(), account) !=
                                   match->accounts.end()) {
        return verdict::allowed;
    }
    return verdict::forbidden;
}

std::ostream& operator<<(std::ostream& os, authorizer::verdict v) {
    switch (v) {
    case authorizer::verdict::allowed: return os << "allowed";
    case authorizer::verdict::unauthorized: return os << "unauthorized";
    case authorizer::verdict::forbidden: return os << "forbidden";
    }
    return os << "verdict(?)";
}

namespace {

constexpr std::size_t max_credential_bytes = 1024;

// RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
bool is_b64token(std::string_view v) {
    std::size_t i = 0;
    for (; i < v.size(); ++i) {
        const auto c = static_cast<unsigned char>(v[i]);
        if (!(std::isalnum(c) != 0 || c == '-' || c == '.' || c == '_' || c == '~' || c == '+' ||
              c == '/')) {
            break;
        }
    }
    if (i == 0) {
        return false;
    }
    for (; i < v.size(); ++i) {
        if (v[i] != '=') {
            return false;
        }
    }
    return true;
}

// Visible ASCII only (no space, no control bytes, no obs-text): nothing that could split or
// fold a header line on its way upstream.
bool is_visible_ascii(std::string_view v) {
    return !v.empty() &&
           std::all_of(v.begin(), v.end(), [](char c) { return c > ' ' && c < '\x7f'; });
}

// The single value of `name`; nullopt when absent; "malformed" (set) when repeated.
std::optional<std::string_view> single_value(const http::fields& h, std::string_view name,
                                             bool& malformed) {
    const auto range = h.equal_range(name);
    if (range.first == range.second) {
        return std::nullopt;
    }
    if (std::next(range.first) != range.second) {
        malformed = true;
    }
    return std::string_view(range.first->value().data(), range.first->value().size());
}

bool has_scheme(std::string_view value, std::string_view lower_scheme) {
    return value.size() > lower_scheme.size() &&
           std::equal(lower_scheme.begin(), lower_scheme.end(), value.begin(), [](char a, char b) {
               return a == std::tolower(static_cast<unsigned char>(b));
           });
}

}  // namespace

caller_credential read_caller_credential(const http::fields* headers) {
    using status = caller_credential::status;
    caller_credential out;
    if (headers == nullptr) {
        return out;
    }
    bool malformed = false;
    const auto authorization = single_value(*headers, "Authorization", malformed);
    const auto email = single_value(*headers, "X-Auth-Email", malformed);
    const auto key = single_value(*headers, "X-Auth-Key", malformed);
    if (!authorization && !email && !key) {
        return out;
    }
    out.state = status::malformed;
    if (malformed || (authorization && (email || key))) {
        return out;
    }
    auto cred = std::make_shared<upstream::credential>();
    std::string material;
    if (authorization) {
        constexpr std::string_view scheme = "bearer ";
        if (!has_scheme(*authorization, scheme)) {
            return out;
        }
        std::string_view token = authorization->substr(scheme.size());
        while (!token.empty() && token.front() == ' ') {
            token.remove_prefix(1);
        }
        if (token.size() > max_credential_bytes || !is_b64token(token)) {
            return out;
        }
        cred->bearer = token;
        material = "bearer\n" + cred->bearer;
    } else {
        if (!email || !key || email->size() > max_credential_bytes ||
            key->size() > max_credential_bytes || !is_visible_ascii(*email) ||
            !is_visible_ascii(*key)) {
            return out;
        }
        cred->email = *email;
        cred->key = *key;
        // Neither part may contain '\n', so the joined form is unambiguous.
        material = "key\n" + cred->email + "\n" + cred->key;
    }
    out.digest = sha256(material);
    out.cred = std::move(cred);
    out.state = status::ok;
    return out;
}

std::ostream& operator<<(std::ostream& os, caller_credential::status s) {
    switch (s) {
    case caller_credential::status::ok: return os << "ok";
    case caller_credential::status::missing: return os << "missing";
    case caller_credential::status::malformed: return os << "malformed";
    }
    return os << "status(?)";
}

proof_cache::proof_cache(std::chrono::steady_clock::duration ttl, std::size_t max_credentials,
                         std::size_t max_accounts)
    : ttl_(ttl),
      max_credentials_(std::max<std::size_t>(1, max_credentials)),
      max_accounts_(std::max<std::size_t>(1, max_accounts)) {}

void proof_cache::prove(const credential_digest& cred, std::string_view account, time_point now) {
    const std::lock_guard lock(mu_);
    // The oldest end holds the credential proved least recently: once its last proof has
    // expired, every proof of it has.
    while (const auto* n = proofs_.oldest()) {
        if (n->last_used + ttl_ > now) {
            break;
        }
        proofs_.pop_oldest();
    }
    if (proofs_.find(cred) == nullptr && proofs_.size() >= max_credentials_) {
        proofs_.pop_oldest();
    }
    auto& list = proofs_.touch(cred, now, [] { return std::vector<proof>{}; }).value;
    const auto expires = now + ttl_;
    for (auto& p : list) {
        if (p.account == account) {
            p.expires = std::max(p.expires, expires);
            return;
        }
    }
    if (list.size() >= max_accounts_) {
        list.erase(std::min_element(list.begin(), list.end(), [](const proof& a, const proof& b) {
            return a.expires < b.expires;
        }));
    }
    list.push_back(proof{std::string(account), expires});
}

bool proof_cache::is_proven(const credential_digest& cred, std::string_view account,
                            time_point now) {
    const std::lock_guard lock(mu_);
    const auto* n = proofs_.find(cred);
    if (n == nullptr) {
        return false;
    }
    return std::any_of(n->value.begin(), n->value.end(),
                       [&](const proof& p) { return p.account == account && now < p.expires; });
}

bool proof_cache::has_any(const credential_digest& cred, time_point now) const {
    const std::lock_guard lock(mu_);
    const auto* n = proofs_.find(cred);
    return n != nullptr && std::any_of(n->value.begin(), n->value.end(),
                                       [&](const proof& p) { return now < p.expires; });
}

void proof_cache::revoke(const credential_digest& cred, std::string_view account) {
    const std::lock_guard lock(mu_);
    auto* n = proofs_.find(cred);
    if (n == nullptr) {
        return;
    }
    std::erase_if(n->value, [&](const proof& p) { return p.account == account; });
    if (n->value.empty()) {
        proofs_.erase(cred);
    }
}

void proof_cache::revoke_all(const credential_digest& cred) {
    const std::lock_guard lock(mu_);
    proofs_.erase(cred);
}

std::size_t proof_cache::size() const {
    const std::lock_guard lock(mu_);
    return proofs_.size();
}

bool is_admin(const http::fields* headers, std::string_view expected) {
    if (expected.empty() || headers == nullptr) {
        return false;
    }
    const std::string_view cred = bearer_credential(*headers);
    // Compare digests so the comparison is constant-time whatever the lengths.
    const auto a = sha256(cred);
    const auto b = sha256(expected);
    return !cred.empty() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace imagegate::gateway
