// load_token(): the upstream API token from CLOUDFLARE_API_TOKEN or upstream.token_file.
//
// The token grants access to the account's images API, so it is handled like a key file:
// never taken from a flag (flags show in `ps`), never echoed in an error, and read only from a
// file that group and others cannot read or write. It ends up in an Authorization header, so
// characters that could split or extend that header (CR, LF, spaces, control bytes) are
// refused rather than sent.

#include "config/files.hpp"
#include "config/load.hpp"

namespace imagegate::config {
namespace {

constexpr std::string_view token_env = "CLOUDFLARE_API_TOKEN";
constexpr std::uint64_t max_token_file_bytes = 64 * kib;

/// Visible ASCII only: what an RFC 9110 token68 / Cloudflare API token consists of.
bool is_valid_token(std::string_view token) {
    for (const char c : token) {
        if (c < 0x21 || c > 0x7e) {
            return false;
        }
    }
    return true;
}

}  // namespace

std::vector<config_error> load_token(const env_lookup& env, settings& s) {
    std::vector<config_error> errors;
    if (const auto from_env = env(token_env); from_env && !from_env->empty()) {
        const auto token = trim(*from_env);
        if (!is_valid_token(token)) {
            errors.push_back({std::string(token_env),
                              "contains spaces or control characters; expected the API token "
                              "alone"});
        } else {
            s.secret.upstream_token = std::string(token);
        }
        return errors;
    }
    const auto& path = s.upstream.token_file;
    if (path.empty()) {
        return errors;
    }
    const std::string key = "upstream.token_file";
    auto file = read_secret_file(path, max_token_file_bytes);
    if (!file.error.empty()) {
        errors.push_back({key, file.error});
        return errors;
    }
    const std::string_view text = file.text;
    const auto token = trim(text.substr(0, text.find('\n')));
    if (!is_valid_token(token)) {
        errors.push_back({key, "the first line of token file " + path +
                                   " contains spaces or control characters; expected the API "
                                   "token alone"});
        return errors;
    }
    s.secret.upstream_token = std::string(token);
    return errors;
}

std::vector<config_error> load_admin_token(settings& s) {
    std::vector<config_error> errors;
    const auto& path = s.admin.token_file;
    if (path.empty()) {
        return errors;
    }
    auto file = read_secret_file(path, max_token_file_bytes);
    if (!file.error.empty()) {
        errors.push_back({"admin.token_file", file.error});
        return errors;
    }
    const std::string_view text = file.text;
    const auto token = trim(text.substr(0, text.find('\n')));
    if (token.size() < 16 || !is_valid_token(token)) {
        errors.push_back(
            {"admin.token_file", "the first line of " + path +
                                     " must be a token of at least 16 visible ASCII characters"});
        return errors;
    }
    s.secret.admin_token = std::string(token);
    return errors;
}

}  // namespace imagegate::config
