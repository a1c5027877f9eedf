#include "gateway/redis/options.hpp"

#include "config/files.hpp"
#include "config/parse.hpp"

#include <boost/throw_exception.hpp>

#include <algorithm>
#include <charconv>
#include <limits>
#include <ostream>
#include <stdexcept>

namespace imagegate::redis {
namespace {

constexpr std::uint64_t max_password_file_bytes = 4096;

bool starts_with_nocase(std::string_view text, std::string_view prefix) {
    if (text.size() < prefix.size()) {
        return false;
    }
    for (std::size_t i = 0; i < prefix.size(); ++i) {
        const char c = text[i];
        const char lower = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
        if (lower != prefix[i]) {
            return false;
        }
    }
    return true;
}

bool is_control(char c) {
    const auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
}

/// RFC 3986 user info without a password: unreserved and sub-delims except ':', plus
/// %XX escapes; decoded bytes must be visible (an ACL user name appears in logs).
boost::system::result<std::string, option_error> decode_user(std::string_view text) {
    constexpr std::string_view allowed = "-._~!$&'()*+,;=";
    std::string out;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (c == '%') {
            // Two hex digits exactly (from_chars alone would accept one).
            const char* first = text.data() + i + 1;
            const char* last = first + std::min<std::size_t>(2, text.size() - i - 1);
            unsigned byte = 0;
            const auto [end, ec] = std::from_chars(first, last, byte, 16);
            if (ec != std::errc() || end != first + 2) {
                return option_error{"redis URL: bad %-escape in the user name"};
            }
            out.push_back(static_cast<char>(byte));
            i += 2;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   allowed.find(c) != std::string_view::npos) {
            out.push_back(c);
        } else {
            return option_error{"redis URL: invalid character in the user name"};
        }
    }
    for (const char c : out) {
        if (is_control(c) || c == ' ') {
            return option_error{"redis URL: the user name decodes to a control byte or space"};
        }
    }
    if (out.empty()) {
        return option_error{"redis URL: empty user name before '@'"};
    }
    return {boost::system::in_place_value, std::move(out)};
}

}  // namespace

std::ostream& operator<<(std::ostream& os, const redis_url& u) {
    return os << "{tls=" << u.tls << " host=" << u.host << " port=" << u.port << " db=" << u.db
              << " user=" << u.user << '}';
}

std::ostream& operator<<(std::ostream& os, const option_error& e) { return os << e.reason; }

void throw_exception_from_error(const option_error& e, const boost::source_location& loc) {
    boost::throw_exception(std::invalid_argument(e.reason), loc);
}

boost::system::result<redis_url, option_error> parse_url(std::string_view text) {
    for (const char c : text) {
        if (is_control(c) || c == ' ') {
            return option_error{"redis URL: contains a space or a control byte"};
        }
    }
    redis_url out;
    if (starts_with_nocase(text, "rediss://")) {
        out.tls = true;
        text.remove_prefix(9);
    } else if (starts_with_nocase(text, "redis://")) {
        text.remove_prefix(8);
    } else {
        return option_error{"redis URL: the scheme must be redis:// or rediss://"};
    }
    if (text.find_first_of("?#") != std::string_view::npos) {
        return option_error{"redis URL: a query or fragment is not supported"};
    }
    const auto slash = text.find('/');
    std::string_view authority = text.substr(0, slash);
    const auto path = slash == std::string_view::npos ? std::string_view{} : text.substr(slash + 1);

    if (const auto at = authority.rfind('@'); at != std::string_view::npos) {
        const auto userinfo = authority.substr(0, at);
        if (userinfo.find(':') != std::string_view::npos) {
            return option_error{
                "redis URL: a password in the URL is refused (it would show in process lists "
                "and logs); put it in the password file"};
        }
        auto user = decode_user(userinfo);
        if (!user) {
            return user.error();
        }
        out.user = std::move(*user);
        authority.remove_prefix(at + 1);
    }

    // HOST and [V6] name no port: the default one, in the syntax the HOST:PORT parser reads.
    const bool bracketed = !authority.empty() && authority.front() == '[';
    const bool has_port = bracketed ? authority.find("]:") != std::string_view::npos
                                    : authority.find(':') != std::string_view::npos;
    const auto hp = config::parse_host_port(has_port ? std::string(authority)
                                                     : std::string(authority) + ":6379");
    if (!hp) {
        return option_error{"redis URL: expected host, host:port or [IPv6]:port"};
    }
    if (hp->port == 0) {
        return option_error{"redis URL: port 0"};
    }
    out.host = hp->host;
    out.port = hp->port;

    if (!path.empty()) {
        const auto db = config::parse_count(path);
        if (!db || *db > std::numeric_limits<std::int32_t>::max()) {
            return option_error{"redis URL: the path must be a database number (/0, /1, …)"};
        }
        out.db = static_cast<std::uint32_t>(*db);
    }
    return out;
}

void apply_url(const redis_url& url, connection_options& opts) {
    opts.tls = url.tls;
    opts.host = url.host;
    opts.port = url.port;
    opts.db = url.db;
    opts.user = url.user;
}

boost::system::result<std::string, option_error> load_password_file(const std::string& path) {
    auto file = config::read_secret_file(path, max_password_file_bytes);
    if (!file.error.empty()) {
        return option_error{std::move(file.error)};
    }
    const std::string_view text = file.text;
    const auto password = config::trim(text.substr(0, text.find('\n')));
    if (password.empty()) {
        return option_error{"redis password file " + path + " is empty"};
    }
    for (const char c : password) {
        if (is_control(c)) {
            return option_error{"redis password file " + path +
                                " contains control bytes on its first line"};
        }
    }
    return {boost::system::in_place_value, std::string(password)};
}

boost::system::result<void, option_error> check(const connection_options& o) {
    using std::chrono::milliseconds;
    if (o.host.empty()) {
        return option_error{"redis: empty host"};
    }
    if (!o.user.empty() && o.password.empty()) {
        return option_error{"redis: an ACL user needs a password (password file)"};
    }
    if (o.connect_timeout <= milliseconds::zero() || o.op_timeout <= milliseconds::zero() ||
        o.health_check_interval <= milliseconds::zero()) {
        return option_error{
            "redis: connect_timeout, op_timeout and health_check_interval must "
            "be positive"};
    }
    if (o.reconnect_min <= milliseconds::zero() || o.reconnect_min > o.reconnect_max) {
        return option_error{"redis: need 0 < reconnect_min <= reconnect_max"};
    }
    if (o.max_pending == 0 || o.max_write_buffer_bytes == 0) {
        return option_error{"redis: max_pending and max_write_buffer_bytes must be positive"};
    }
    const auto& l = o.limits;
    if (l.max_depth < 1 || l.max_depth > 7) {
        return option_error{"redis: limits.max_depth must be 1..7 (hiredis' parser limit)"};
    }
    if (l.max_bulk_bytes == 0 || l.max_array_elements == 0 || l.max_reply_bytes == 0) {
        return option_error{"redis: reply limits must be positive"};
    }
    return {};
}

std::string describe(const connection_options& o) {
    std::string out = o.tls ? "rediss://" : "redis://";
    if (!o.user.empty()) {
        out += printable(o.user) + "@";
    }
    out += o.host.find(':') != std::string::npos ? "[" + o.host + "]" : o.host;
    out += ":" + std::to_string(o.port) + "/" + std::to_string(o.db);
    out += o.password.empty() ? " (no password)" : " (password set)";
    if (o.tls) {
        out += o.ca_file.empty() ? " (system CAs)" : " (CA file " + o.ca_file + ")";
    }
    return out;
}

}  // namespace imagegate::redis
