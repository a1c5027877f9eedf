#include "config/keys.hpp"
#include "config/settings.hpp"

#include <string>

namespace imagegate::config {

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
    out += s.secret.upstream_token.empty() ? "<unset>" : "<set>";
    out += "\nauth.client_keys = ";
    out += std::to_string(s.auth.client_keys.size());
    out += " key(s)\nadmin.token = ";
    out += s.secret.admin_token.empty() ? "<unset> (purge disabled)" : "<set>";
    out += '\n';
    return out;
}

}  // namespace imagegate::config
