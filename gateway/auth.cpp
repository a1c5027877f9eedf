#include "gateway/auth.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
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

authorizer::authorizer(const std::vector<config::client_key>& keys) {
    for (const auto& k : keys) {
        entry e{from_hex(k.sha256), {}, false};
        for (const auto& a : k.accounts) {
            if (a == "*") {
                e.all_accounts = true;
            } else {
                e.accounts.push_back(a);
            }
        }
        keys_.push_back(std::move(e));
    }
}

authorizer::verdict authorizer::check(const http::fields* headers,
                                      std::string_view account) const {
    if (keys_.empty()) {
        return verdict::allowed;
    }
    const std::string_view cred = headers != nullptr ? bearer_credential(*headers) : "";
    if (cred.empty()) {
        return verdict::unauthorized;
    }
    // Hash first, then compare against every configured digest without stopping early: the
    // time taken does not depend on which key (if any) matched, nor on how much of it.
    const auto digest = sha256(cred);
    const entry* match = nullptr;
    for (const auto& e : keys_) {
        const bool equal = CRYPTO_memcmp(e.digest.data(), digest.data(), digest.size()) == 0;
        match = equal ? &e : match;
    }
    if (match == nullptr) {
        return verdict::unauthorized;
    }
    if (match->all_accounts ||
        std::find(match->accounts.begin(), match->accounts.end(), account) !=
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
