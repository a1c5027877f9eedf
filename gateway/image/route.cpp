#include "gateway/image/route.hpp"

#include "gateway/core/request_target.hpp"
#include "gateway/core/utf8.hpp"

#include <algorithm>
#include <array>

namespace imagegate::gateway {
namespace {

constexpr std::string_view client_v4_prefix = "/client/v4";

int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

// RFC 3986 unreserved characters: ALPHA / DIGIT / "-" / "." / "_" / "~".
constexpr std::array<bool, 256> unreserved_table = [] {
    std::array<bool, 256> t{};
    for (int c = 0; c < 256; ++c) {
        t[static_cast<std::size_t>(c)] = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                                         (c >= '0' && c <= '9') || c == '-' || c == '.' ||
                                         c == '_' || c == '~';
    }
    return t;
}();

bool is_unreserved(unsigned char c) noexcept { return unreserved_table[c]; }

// Splits "/a/b/c" into at most N segments; returns the count, or N+1 when there are more.
template <std::size_t N>
std::size_t split_path(std::string_view path, std::array<std::string_view, N>& out) noexcept {
    std::size_t n = 0;
    if (path.empty() || path.front() != '/') {
        return N + 1;
    }
    path.remove_prefix(1);
    while (true) {
        const auto slash = path.find('/');
        if (n == N) {
            return N + 1;
        }
        out[n++] = path.substr(0, slash);
        if (slash == std::string_view::npos) {
            return n;
        }
        path.remove_prefix(slash + 1);
    }
}

// Endpoints that share the images/v1 prefix but are not image details
// (upstream-api.md: keys, stats, variants[/…]).
bool is_sibling_endpoint(std::string_view segment) noexcept {
    return segment == "keys" || segment == "stats" || segment == "variants";
}

// C0 controls and DEL never occur in real ids; refusing them keeps ids safe to log.
bool has_control_bytes(std::string_view s) noexcept {
    for (const char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (c < 0x20 || c == 0x7f) {
            return true;
        }
    }
    return false;
}

}  // namespace

bool percent_decode(std::string_view in, std::string& out) {
    out.clear();
    out.reserve(in.size());
    for (std::size_t i = 0; i < in.size(); ++i) {
        const char c = in[i];
        if (c != '%') {
            out.push_back(c);
            continue;
        }
        if (i + 2 >= in.size()) {
            return false;
        }
        const int hi = hex_value(in[i + 1]);
        const int lo = hex_value(in[i + 2]);
        if (hi < 0 || lo < 0) {
            return false;
        }
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
    }
    return true;
}

std::string percent_encode(std::string_view in) {
    static constexpr char hex[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(in.size() * 3);
    for (const char ch : in) {
        const auto c = static_cast<unsigned char>(ch);
        if (is_unreserved(c)) {
            out.push_back(ch);
        } else {
            out.push_back('%');
            out.push_back(hex[c >> 4]);
            out.push_back(hex[c & 0x0f]);
        }
    }
    return out;
}

bool is_valid_utf8(std::string_view s) noexcept { return imagegate::is_valid_utf8(s); }

bool is_account_id(std::string_view s) noexcept {
    if (s.size() != 32) {
        return false;
    }
    for (const char c : s) {
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return false;
        }
    }
    return true;
}

std::string_view request_path(std::string_view target) noexcept {
    // Absolute-form (RFC 9112 §3.2.2): scheme and authority are dropped; the gateway's
    // upstream is configured, never taken from the request.
    const std::size_t start = target_path_start(target);
    if (start == std::string_view::npos) {
        return {};
    }
    target.remove_prefix(start);
    return target.substr(0, target.find('?'));  // no '#': target_path_start refuses fragments
}

image_route image_target::to_route() const {
    return {.account = std::string(account()),
            .image_id = std::string(image_id()),
            .canonical_id = std::string(canonical_id())};
}

image_target parse_image_target(std::string_view target) {
    image_target r;
    if (!is_supported_target(target)) {
        r.error = errc::bad_request;
        return r;
    }
    std::string_view path = request_path(target);
    if (path.starts_with(client_v4_prefix) &&
        (path.size() == client_v4_prefix.size() || path[client_v4_prefix.size()] == '/')) {
        path.remove_prefix(client_v4_prefix.size());
    }
    // accounts / {a} / images / v1 / {id}
    std::array<std::string_view, 5> seg{};
    const std::size_t n = split_path(path, seg);
    if (n != 5 || seg[0] != "accounts" || seg[2] != "images" || seg[3] != "v1") {
        r.error = errc::route_not_found;
        return r;
    }
    if (is_sibling_endpoint(seg[4])) {
        r.error = errc::route_not_found;
        return r;
    }
    if (!is_account_id(seg[1])) {
        r.error = errc::invalid_account_id;
        return r;
    }
    r.account_ = seg[1];
    r.segment_ = seg[4];
    if (std::all_of(seg[4].begin(), seg[4].end(),
                    [](char c) { return is_unreserved(static_cast<unsigned char>(c)); })) {
        // Canonical as it stands: decoding changes nothing, and unreserved bytes are ASCII
        // without controls; the sibling names were checked above.
        if (seg[4].empty() || seg[4].size() > max_image_id_bytes || seg[4] == "." ||
            seg[4] == "..") {
            r.error = errc::invalid_image_id;
        }
        return r;
    }
    std::string decoded;
    if (!percent_decode(seg[4], decoded) || decoded.empty() ||
        decoded.size() > max_image_id_bytes || decoded == "." || decoded == ".." ||
        !is_valid_utf8(decoded) || has_control_bytes(decoded)) {
        r.error = errc::invalid_image_id;
        return r;
    }
    // An encoded sibling name ("%6Beys") would reach the same upstream endpoint once the
    // upstream decodes it; never treat it as an image id.
    if (is_sibling_endpoint(decoded)) {
        r.error = errc::route_not_found;
        return r;
    }
    r.owned_ = true;
    r.canonical_ = percent_encode(decoded);
    r.decoded_ = std::move(decoded);
    return r;
}

route_result route_image(std::string_view target) {
    const image_target t = parse_image_target(target);
    route_result r;
    r.error = t.error;
    if (t.ok()) {
        r.image = t.to_route();
    }
    return r;
}

}  // namespace imagegate::gateway
