// load_token(): the upstream API token from CLOUDFLARE_API_TOKEN or upstream.token_file.
//
// The token grants access to the account's images API, so it is handled like a key file:
// never taken from a flag (flags show in `ps`), never echoed in an error, and read only from a
// file that group and others cannot read or write. It ends up in an Authorization header, so
// characters that could split or extend that header (CR, LF, spaces, control bytes) are
// refused rather than sent.
#include <array>
#include <cstdio>

#include "config/files.hpp"
#include "config/load.hpp"

namespace imagegate::config {
namespace {

constexpr std::string_view token_env = "CLOUDFLARE_API_TOKEN";
constexpr std::uint64_t max_token_file_bytes = 64 * kib;

std::string_view trim(std::string_view text) {
    constexpr std::string_view space = " \t\r\n\f\v";
    const auto first = text.find_first_not_of(space);
    if (first == std::string_view::npos) {
        return {};
    }
    const auto last = text.find_last_not_of(space);
    return text.substr(first, last - first + 1);
}

/// Visible ASCII only: what an RFC 9110 token68 / Cloudflare API token consists of.
bool is_valid_token(std::string_view token) {
    for (const char c : token) {
        if (c < 0x21 || c > 0x7e) {
            return false;
        }
    }
    return true;
}

std::string octal_mode(unsigned mode) {
    std::array<char, 8> buf{};
    std::snprintf(buf.data(), buf.size(), "%04o", mode);
    return buf.data();
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
    auto file = read_regular_file(path, max_token_file_bytes);
    if (!file.error.empty()) {
        errors.push_back({key, file.error});
        return errors;
    }
    if ((file.mode & 077U) != 0) {
        errors.push_back({key, "token file " + path +
                                   " is readable or writable by group or others "
                                   "(mode " +
                                   octal_mode(file.mode) + "); run `chmod 600 " + path +
                                   "` (Kubernetes: defaultMode: 0400 on the volume)"});
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

}  // namespace imagegate::config
