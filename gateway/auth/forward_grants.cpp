// authorizer::check_forward(): who may send what upstream with the gateway's token.
#include "gateway/auth/authorizer.hpp"

#include "config/forward.hpp"

#include <algorithm>
#include <ostream>

namespace imagegate::gateway {

namespace http = boost::beast::http;

std::uint32_t forward_method_bit(http::verb m) noexcept {
    switch (m) {
    case http::verb::get: return 1U << 0;
    case http::verb::head: return 1U << 1;
    case http::verb::post: return 1U << 2;
    case http::verb::put: return 1U << 3;
    case http::verb::patch: return 1U << 4;
    case http::verb::delete_: return 1U << 5;
    default: return 0;
    }
}

std::uint32_t forward_method_set(const std::vector<std::string>& methods) {
    std::uint32_t out = 0;
    for (const auto& m : methods) {
        out |= forward_method_bit(http::string_to_verb(m));
    }
    return out;
}

namespace {

forward_decision refuse(forward_verdict v, errc e, std::string message) {
    return {v, e, std::move(message)};
}

/// The method's name for a message: one of the six, or "this method" (beast's name of an
/// unknown verb is not the client's spelling, and the client's spelling is not echoed).
std::string method_name(http::verb m) {
    return forward_method_bit(m) != 0 ? std::string(http::to_string(m)) : "this method";
}

bool inside_accounts(const std::vector<std::string>& accounts, std::string_view path) {
    return std::any_of(accounts.begin(), accounts.end(), [&](const std::string& a) {
        return config::path_within(path, "/accounts/" + a);
    });
}

}  // namespace

forward_verdict authorizer::check_forward(const http::fields* headers, http::verb method,
                                          std::string_view path, bool loopback_peer) const {
    return decide_forward(headers, method, path, loopback_peer).verdict;
}

forward_decision authorizer::decide_forward(const http::fields* headers, http::verb method,
                                            std::string_view path, bool loopback_peer) const {
    const auto grants = keys_.load();
    const auto bit = forward_method_bit(method);
    const std::string name = method_name(method);
    const std::string_view cred =
        headers != nullptr && !grants->keys.empty() ? bearer_credential(*headers) : "";
    const entry* key = cred.empty() ? nullptr : find_key(*grants, cred);
    if (key == nullptr) {
        // Without keys every caller is anonymous and its Authorization (an SDK always sends
        // one) is ignored, as for reads; with keys, a credential that matches none is 401.
        if (!cred.empty()) {
            return refuse(forward_verdict::unauthorized, errc::unauthorized,
                          "Authentication required: the client key is not known");
        }
        const bool granted = bit != 0 && (grants->anonymous_methods & bit) != 0;
        if (!grants->keys.empty() && !(granted && loopback_peer)) {
            return refuse(forward_verdict::unauthorized, errc::unauthorized,
                          "Authentication required: forwarding needs a client key with "
                          "auth.client_keys[].forward");
        }
        if (!granted) {
            return refuse(forward_verdict::not_granted, errc::forward_anonymous_not_granted,
                          "Forwarding " + name +
                              " is not granted to callers without a client key: give the "
                              "caller a key with auth.client_keys[].forward, or add it to "
                              "forward.anonymous_methods (loopback callers only)");
        }
        if (!loopback_peer) {
            return refuse(forward_verdict::not_granted, errc::forward_anonymous_not_granted,
                          "forward.anonymous_methods is granted to loopback callers only: "
                          "give this caller a key with auth.client_keys[].forward");
        }
    } else if (bit == 0 || (key->forward_methods & bit) == 0) {
        return refuse(forward_verdict::not_granted, errc::forward_not_granted,
                      "Forwarding " + name +
                          " is not granted to this client key: add it to "
                          "auth.client_keys[].forward");
    } else if ((!key->all_accounts && !inside_accounts(key->accounts, path)) ||
               (!key->forward_prefixes.empty() &&
                std::none_of(key->forward_prefixes.begin(), key->forward_prefixes.end(),
                             [&](const std::string& p) { return config::path_within(path, p); }))) {
        return refuse(forward_verdict::forbidden_account, errc::forward_path_forbidden,
                      "This client key may not forward to this path: it is outside the key's "
                      "auth.client_keys[].accounts or forward_prefixes");
    }
    // Checked for every caller: the grant was decided on the path as spelled, and a server
    // that decodes and normalizes it must not reach another account or prefix.
    if (!path.starts_with('/') || config::path_may_escape(path)) {
        return refuse(forward_verdict::forbidden_account, errc::forward_path_forbidden,
                      "The path has a \".\" or \"..\" segment (possibly percent-encoded) or a "
                      "control byte and is never forwarded");
    }
    return {};
}

std::ostream& operator<<(std::ostream& os, forward_verdict v) {
    switch (v) {
    case forward_verdict::allowed: return os << "allowed";
    case forward_verdict::unauthorized: return os << "unauthorized";
    case forward_verdict::not_granted: return os << "not_granted";
    case forward_verdict::forbidden_account: return os << "forbidden_account";
    }
    return os << "forward_verdict(?)";
}

}  // namespace imagegate::gateway
