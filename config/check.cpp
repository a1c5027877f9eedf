// check(): every key's range (from the key table) plus the rules that span keys or touch
// the file system.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "config/files.hpp"
#include "config/forward.hpp"
#include "config/keys.hpp"
#include "config/load.hpp"
#include "config/parse.hpp"

namespace imagegate::config {
namespace {

/// A CA bundle larger than this is surely not one.
constexpr std::uint64_t max_ca_file_bytes = 16 * mib;
/// A listener certificate chain or key larger than this is surely not one.
constexpr std::uint64_t max_pem_file_bytes = 1 * mib;

bool is_power_of_two(std::uint64_t n) { return n != 0 && (n & (n - 1)) == 0; }

bool has_error(const std::vector<config_error>& errors, std::string_view key) {
    return std::any_of(errors.begin(), errors.end(),
                       [&](const config_error& e) { return e.key == key; });
}

// An IP literal in 127.0.0.0/8 or ::1, or the name localhost; "127.example.com" is not.
bool is_loopback(const std::string& host) {
    if (host == "localhost") {
        return true;
    }
    in_addr v4{};
    if (::inet_pton(AF_INET, host.c_str(), &v4) == 1) {
        return (ntohl(v4.s_addr) >> 24) == 127;
    }
    in6_addr v6{};
    return ::inet_pton(AF_INET6, host.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

// A Redis key prefix: printable, no glob characters (purges SCAN with it), no braces (hash
// tags are the gateway's), no space or control byte (it reaches keys and logs).
bool is_key_prefix(std::string_view p) {
    if (p.empty() || p.size() > 64) {
        return false;
    }
    return std::all_of(p.begin(), p.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '.' || c == '_' || c == '-' || c == ':';
    });
}

// [redis] and [fleet]: the rules config/ can check alone. The URL's full grammar and the
// password file are checked by the fleet tier (gateway/fleet/settings_check.hpp), which main
// runs next to check() so --check-config reports them too.
void check_fleet_keys(const settings& s, std::vector<config_error>& errors) {
    if (!is_key_prefix(s.redis.key_prefix)) {
        errors.push_back({"redis.key_prefix", "must be 1..64 characters of A-Z a-z 0-9 . _ - :"});
    }
    if (s.redis.url.empty()) {
        return;
    }
    // A request that loses the fill lease waits up to fleet.lease_timeout, then may fetch
    // itself: its flight's waiters must outlast both.
    if (!has_error(errors, "shield.coalesce_timeout") &&
        !has_error(errors, "fleet.lease_timeout") &&
        s.shield.coalesce_timeout <
            s.shield.max_queue_wait + s.upstream.request_timeout + s.fleet.lease_timeout) {
        errors.push_back({"shield.coalesce_timeout",
                          "with [redis] url set, must be at least shield.max_queue_wait + "
                          "upstream.request_timeout + fleet.lease_timeout (" +
                              format_duration(s.shield.max_queue_wait + s.upstream.request_timeout +
                                              s.fleet.lease_timeout) +
                              ")"});
    }
    if (!s.redis.username.empty() && s.redis.password_file.empty()) {
        errors.push_back({"redis.username", "an ACL user needs redis.password_file"});
    }
}

// [warm] state_file: written as a temporary file in its directory and renamed over, so the
// directory must exist and be writable, and the path, if it exists, must be a regular file.
void check_warm_state_file(const std::string& path, std::vector<config_error>& errors) {
    if (path.empty()) {
        return;
    }
    const std::filesystem::path p(path);
    const auto name = p.filename().string();
    if (name.empty() || name == "." || name == "..") {
        errors.push_back({"warm.state_file", "must name a file, not a directory"});
        return;
    }
    const std::string dir = p.has_parent_path() ? p.parent_path().string() : ".";
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
        errors.push_back({"warm.state_file", "its directory " + dir + " does not exist"});
        return;
    }
    if (::access(dir.c_str(), W_OK | X_OK) != 0) {
        errors.push_back(
            {"warm.state_file", "its directory " + dir + " is not writable by this user"});
    }
    if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
        errors.push_back({"warm.state_file", path + " exists and is not a regular file"});
    }
}

// Forward grants: a prefix must lie inside the key's accounts (else it grants nothing and is a
// mistake), prefixes need methods, and anonymous forwarding is a token-mode grant.
void check_forward_grants(const settings& s, bool passthrough, std::vector<config_error>& errors) {
    if (passthrough && !s.forward.anonymous_methods.empty()) {
        errors.push_back({"forward.anonymous_methods",
                          "is for auth.mode = \"token\"; in passthrough mode every caller "
                          "forwards with its own Cloudflare credential"});
    }
    for (const auto& key : s.auth.client_keys) {
        if (!key.forward_prefixes.empty() && key.forward.empty()) {
            errors.push_back({"auth.client_keys.forward_prefixes",
                              "limits the key's forward grant, which is empty: add methods to "
                              "auth.client_keys[].forward"});
        }
        const bool all_accounts =
            std::find(key.accounts.begin(), key.accounts.end(), "*") != key.accounts.end();
        for (const auto& prefix : key.forward_prefixes) {
            const bool inside =
                all_accounts ||
                std::any_of(key.accounts.begin(), key.accounts.end(), [&](const std::string& a) {
                    return path_within(prefix, "/accounts/" + a);
                });
            if (!inside) {
                errors.push_back({"auth.client_keys.forward_prefixes",
                                  "\"" + prefix +
                                      "\" is outside the key's accounts: a key limited to "
                                      "accounts forwards only /accounts/<one of them>/..."});
            }
        }
    }
}

}  // namespace

std::vector<config_error> check(const settings& s) {
    std::vector<config_error> errors;
    for (const auto& key : keys()) {
        if (auto reason = validate(key, read(key, s))) {
            errors.push_back({key.path(), std::move(*reason)});
        }
    }

    if (!has_error(errors, "cache.shards") && !is_power_of_two(s.cache.shards)) {
        errors.push_back({"cache.shards", "must be a power of two (1, 2, 4, ..., 1024)"});
    }
    // Cross-field rules only compare values that passed their own range check.
    if (!has_error(errors, "cache.max_bytes") && s.cache.max_entry_bytes > s.cache.max_bytes) {
        errors.push_back({"cache.max_entry_bytes", "must not exceed cache.max_bytes (" +
                                                       format_size(s.cache.max_bytes) + ")"});
    }
    if (!has_error(errors, "shield.budget") && s.shield.burst > s.shield.budget) {
        errors.push_back({"shield.burst", "must not exceed shield.budget (" +
                                              std::to_string(s.shield.budget) + ")"});
    }
    // Which waits bound which: a miss waits in line at most shield.max_queue_wait, then its
    // exchange at most upstream.request_timeout; whoever waits for that fetch
    // (shield.coalesce_timeout) must outlast both, so a slow upstream is answered 504 (99504)
    // by the fetch itself and a full queue 429 at once, never a coalesce timeout (99531).
    if (!has_error(errors, "shield.max_queue_wait") &&
        !has_error(errors, "upstream.request_timeout") &&
        !has_error(errors, "shield.coalesce_timeout") &&
        s.shield.coalesce_timeout < s.shield.max_queue_wait + s.upstream.request_timeout) {
        errors.push_back(
            {"shield.coalesce_timeout",
             "must be at least shield.max_queue_wait + upstream.request_timeout (" +
                 format_duration(s.shield.max_queue_wait + s.upstream.request_timeout) + ")"});
    }
    // Plain HTTP would send the API token in clear text: allowed only on explicit request.
    if (const auto url = parse_upstream_url(s.upstream.url);
        url && !url->tls && !s.upstream.allow_plaintext) {
        errors.push_back({"upstream.url",
                          "http:// sends the API token unencrypted; use https:// or set "
                          "upstream.allow_plaintext = true (local emulators only)"});
    }
    if (const auto data = parse_host_port(s.server.listen),
        admin = parse_host_port(s.server.admin_listen);
        data && admin && data->port != 0 && *data == *admin) {
        errors.push_back({"server.admin_listen", "must differ from server.listen"});
    }
    const bool passthrough = s.auth.mode == "passthrough";
    if (s.auth.mode != "token" && !passthrough) {
        errors.push_back({"auth.mode", "must be \"token\" or \"passthrough\""});
    }
    if (passthrough && !s.auth.client_keys.empty()) {
        errors.push_back({"auth.client_keys",
                          "client keys are for auth.mode = \"token\"; in passthrough mode "
                          "callers present their own Cloudflare credentials"});
    }
    for (std::size_t i = 0; i < s.auth.client_keys.size(); ++i) {
        for (std::size_t j = 0; j < i; ++j) {
            if (s.auth.client_keys[i].sha256 == s.auth.client_keys[j].sha256) {
                errors.push_back({"auth.client_keys", "the same key hash appears twice"});
            }
        }
    }
    check_forward_grants(s, passthrough, errors);
    // A shared cache in front of a credential: with no client keys, anyone who can reach
    // the listener reads through the gateway's token. Only loopback is safe by default.
    if (const auto data = parse_host_port(s.server.listen);
        data && !passthrough && s.auth.client_keys.empty() && !s.auth.allow_anonymous &&
        !is_loopback(data->host)) {
        errors.push_back({"auth.allow_anonymous",
                          "server.listen is not a loopback address and no [[auth.client_keys]] "
                          "are configured: add client keys, or set auth.allow_anonymous = true "
                          "to serve anyone who can reach " +
                              s.server.listen});
    }
    if (s.server.tls_cert.empty() != s.server.tls_key.empty()) {
        errors.push_back({s.server.tls_cert.empty() ? "server.tls_cert" : "server.tls_key",
                          "server.tls_cert and server.tls_key go together"});
    }
    if (!s.server.tls_cert.empty()) {
        if (auto file = read_regular_file(s.server.tls_cert, max_pem_file_bytes);
            !file.error.empty()) {
            errors.push_back({"server.tls_cert", std::move(file.error)});
        }
    }
    if (!s.server.tls_key.empty()) {
        if (auto file = read_secret_file(s.server.tls_key, max_pem_file_bytes);
            !file.error.empty()) {
            errors.push_back({"server.tls_key", std::move(file.error)});
        }
    }
    if (!s.upstream.ca_file.empty()) {
        if (auto file = read_regular_file(s.upstream.ca_file, max_ca_file_bytes);
            !file.error.empty()) {
            errors.push_back({"upstream.ca_file", std::move(file.error)});
        }
    }
    check_fleet_keys(s, errors);
    check_warm_state_file(s.warm.state_file, errors);
    return errors;
}

}  // namespace imagegate::config
