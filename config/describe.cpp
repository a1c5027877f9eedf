// describe(), to_toml() and changed_keys(): the settings as text for the start-up log and
// --print-config, and what a reload changes. Secrets are never written, only whether set.
#include "config/keys.hpp"
#include "config/settings.hpp"

#include <string>

namespace imagegate::config {
namespace {

std::string_view set_or_unset(const std::string& secret) {
    return secret.empty() ? "<unset>" : "<set>";
}

}  // namespace

std::string describe(const settings& s) {
    std::string out;
    for (const auto& key : keys()) {
        out += key.path();
        out += " = ";
        out += format_toml(key, s);
        out += '\n';
    }
    // Whether a token is present is useful at start-up; its value or length is not.
    out += "upstream.token = ";
    out += set_or_unset(s.secret.upstream_token);
    out += "\nauth.client_keys = ";
    out += std::to_string(s.auth.client_keys.size());
    out += " key(s)\nadmin.token = ";
    out += s.secret.admin_token.empty() ? "<unset> (purge disabled)" : "<set>";
    out += '\n';
    return out;
}

std::string to_toml(const settings& s) {
    std::string out =
        "# imagegate effective configuration (defaults < file < environment < flags)\n";
    std::string_view section;
    for (const auto& key : keys()) {
        if (key.section != section) {
            section = key.section;
            out += "\n[";
            out += section;
            out += "]\n";
        }
        out += key.name;
        out += " = ";
        out += format_toml(key, s);
        out += '\n';
    }
    out += "\n# upstream token (CLOUDFLARE_API_TOKEN or upstream.token_file): ";
    out += set_or_unset(s.secret.upstream_token);
    out += "\n# admin token (admin.token_file): ";
    out += set_or_unset(s.secret.admin_token);
    out += "\n# client keys ([[auth.client_keys]] and auth.keys_file): ";
    out += std::to_string(s.auth.client_keys.size());
    out += '\n';
    return out;
}

std::vector<std::string> changed_keys(const settings& a, const settings& b) {
    std::vector<std::string> out;
    for (const auto& key : keys()) {
        if (read(key, a) != read(key, b)) {
            out.push_back(key.path());
        }
    }
    if (a.auth.client_keys != b.auth.client_keys) {
        out.emplace_back("auth.client_keys");
    }
    if (a.secret.upstream_token != b.secret.upstream_token) {
        out.emplace_back("upstream.token");
    }
    if (a.secret.admin_token != b.secret.admin_token) {
        out.emplace_back("admin.token");
    }
    return out;
}

}  // namespace imagegate::config
