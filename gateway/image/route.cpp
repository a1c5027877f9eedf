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

// Splits "/a/b/c/…" into the first N segments and the rest after the N-th '/' (`rest` is
// empty and `has_rest` false when there are exactly N). False when there are fewer.
template <std::size_t N>
bool split_prefix(std::string_view path, std::array<std::string_view, N>& out,
                  std::string_view& rest, bool& has_rest) noexcept {
    if (path.empty() || path.front() != '/') {
        return false;
    }
    path.remove_prefix(1);
    for (std::size_t n = 0; n < N; ++n) {
        const auto slash = path.find('/');
        out[n] = path.substr(0, slash);
        if (slash == std::string_view::npos) {
            has_rest = false;
            rest = {};
            return n + 1 == N;
        }
        path.remove_prefix(slash + 1);
    }
    has_rest = true;
    rest = path;
    return true;
}

// Endpoints that share the images/v1 prefix but are not image details
// (upstream-api.md: keys, stats, variants[/…]).
bool is_sibling_endpoint(std::string_view segment) noexcept {
    return segment == "keys" || segment == "stats" || segment == "variants";
}

// A decoded id that names a sibling route whichever way it is spelled (`keys/x` is under
// keys, `a/blob` is the blob of `a`): never read as an image id.
bool is_reserved_id(std::string_view decoded) noexcept {
    const auto first_slash = decoded.find('/');
    if (is_sibling_endpoint(decoded.substr(0, first_slash))) {
        return true;
    }
    return first_slash != std::string_view::npos &&
           decoded.substr(decoded.rfind('/') + 1) == "blob";
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

namespace {

// The checks every decoded id passes, whichever way it was spelled.
bool is_acceptable_id(std::string_view decoded) {
    return !decoded.empty() && decoded.size() <= max_image_id_bytes && decoded != "." &&
           decoded != ".." && is_valid_utf8(decoded) && !has_control_bytes(decoded);
}

}  // namespace

// An id sent as raw segments (`folder/sub/x`): `first` is its first segment, `more` the rest
// of the path. Each segment is decoded on its own (a dot segment is refused: clients
// collapse them, so it never names an id); the id is the decoded segments joined by `/`,
// keyed like its %2F spelling, and sent upstream as the segments, each re-encoded.
void parse_segmented_id(std::string_view first, std::string_view more, image_target& r) {
    // Bounded before any work: every byte of a 1024-byte id escaped, plus the slashes.
    if (first.size() + more.size() + 1 > 3 * max_image_id_bytes) {
        r.error = errc::invalid_image_id;
        return;
    }
    std::string id;
    std::string upstream;
    std::string part;
    std::string_view s = first;
    std::string_view rest = more;
    bool last = false;
    for (std::size_t segments = 0;; ++segments) {
        if (s.empty()) {
            r.error = errc::route_not_found;  // `a//b`, `a/`: no id the upstream would read
            return;
        }
        if (segments == max_image_id_segments || !percent_decode(s, part) || part == "." ||
            part == "..") {
            r.error = errc::invalid_image_id;
            return;
        }
        if (segments > 0) {
            id.push_back('/');
            upstream.push_back('/');
        }
        id += part;
        upstream += percent_encode(part);
        if (last) {
            break;
        }
        const auto slash = rest.find('/');
        s = rest.substr(0, slash);
        last = slash == std::string_view::npos;
        rest.remove_prefix(last ? rest.size() : slash + 1);
    }
    if (!is_acceptable_id(id)) {
        r.error = errc::invalid_image_id;
        return;
    }
    if (is_reserved_id(id)) {
        r.error = errc::route_not_found;
        return;
    }
    r.owned_ = true;
    r.canonical_ = percent_encode(id);
    r.upstream_ = std::move(upstream);
    r.decoded_ = std::move(id);
}

bool is_servable_image_id(std::string_view decoded) {
    return is_acceptable_id(decoded) && !is_reserved_id(decoded);
}

image_route image_target::to_route() const {
    return {.account = std::string(account()),
            .image_id = std::string(image_id()),
            .canonical_id = std::string(canonical_id()),
            .upstream_id = std::string(upstream_id())};
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
    // accounts / {a} / images / v1 / {id segment}[/ {more id segments}]
    std::array<std::string_view, 5> seg{};
    std::string_view more;
    bool has_more = false;
    if (!split_prefix(path, seg, more, has_more) || seg[0] != "accounts" || seg[2] != "images" ||
        seg[3] != "v1" || is_sibling_endpoint(seg[4])) {
        r.error = errc::route_not_found;
        return r;
    }
    if (!is_account_id(seg[1])) {
        r.error = errc::invalid_account_id;
        return r;
    }
    r.account_ = seg[1];
    r.segment_ = seg[4];
    if (has_more) {
        parse_segmented_id(seg[4], more, r);
        return r;
    }
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
    if (!percent_decode(seg[4], decoded) || !is_acceptable_id(decoded)) {
        r.error = errc::invalid_image_id;
        return r;
    }
    // An encoded sibling name ("%6Beys", "keys%2Fx", "a%2Fblob") would reach the same
    // upstream endpoint once the upstream decodes it; never treat it as an image id.
    if (is_reserved_id(decoded)) {
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
