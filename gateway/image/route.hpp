// Pure routing of data-plane request targets: which endpoint, which account, and the
// canonical form of the image id that keys the cache. No I/O; table-tested.
#pragma once

#include "cache/key.hpp"
#include "gateway/core/errc.hpp"

#include <string>
#include <string_view>

namespace imagegate::gateway {

/// An image-details request, validated.
struct image_route {
    std::string account;       ///< 32 lowercase hex characters
    std::string image_id;      ///< decoded id (UTF-8, 1..1024 bytes); compared with result.id
    std::string canonical_id;  ///< re-encoded one fixed way (`/` as %2F); keys the cache
    /// What goes upstream after `images/v1/`: the canonical id, or for an id sent as several
    /// raw segments (`folder/sub/x`) those segments, each re-encoded canonically, joined by
    /// `/` (the form the client used; the upstream reads both as one id).
    std::string upstream_id;

    friend bool operator==(const image_route&, const image_route&) = default;
};

/// Outcome of routing one request target.
struct route_result {
    errc error{};  ///< value-initialised (0) when the target is the image route
    image_route image;

    bool ok() const noexcept { return error == errc{}; }
};

/// An image-details request target routed without copying: the account, and the id while its
/// segment is already canonical (only unreserved characters, as every generated id and most
/// custom ones are), are views into the target, so routing and the cache lookup of a hit
/// allocate nothing; an id that needs decoding or re-encoding is held in owned strings.
/// Valid while the target's bytes are; `to_route()` copies it for work that outlives them
/// (an upstream fetch). Distinct objects safe, shared unsafe; copies and moves stay valid
/// (accessors re-derive their views).
class image_target {
public:
    errc error{};  ///< value-initialised (0) when the target is the image route

    bool ok() const noexcept { return error == errc{}; }
    std::string_view account() const noexcept { return account_; }
    /// Decoded id (UTF-8, 1..1024 bytes); compared with result.id.
    std::string_view image_id() const noexcept { return owned_ ? decoded_ : segment_; }
    /// Re-encoded one fixed way; keys the cache.
    std::string_view canonical_id() const noexcept { return owned_ ? canonical_ : segment_; }
    /// What goes upstream after `images/v1/` (image_route::upstream_id).
    std::string_view upstream_id() const noexcept {
        return !owned_ ? segment_ : upstream_.empty() ? std::string_view(canonical_) : upstream_;
    }
    /// The cache key, as views (no allocation).
    cache::key_view key() const noexcept { return {account(), canonical_id()}; }
    image_route to_route() const;

private:
    friend image_target parse_image_target(std::string_view target);
    friend void parse_segmented_id(std::string_view first, std::string_view more, image_target& r);

    std::string_view account_;  // into the target
    std::string_view segment_;  // into the target: the id segment, canonical unless owned_
    bool owned_ = false;        // the segment needed decoding or re-encoding
    std::string decoded_;       // set when owned_
    std::string canonical_;     // set when owned_
    std::string upstream_;      // set for an id sent as several segments
};

/// Routes `target` like `route_image` (same rules, same errors), without copying when the id
/// segment is canonical.
image_target parse_image_target(std::string_view target);

/// Largest decoded image id accepted (Cloudflare custom ids are at most 1024 bytes).
inline constexpr std::size_t max_image_id_bytes = 1024;
/// Most raw path segments one id may be sent as (`folder/sub/x` is 3).
inline constexpr std::size_t max_image_id_segments = 64;

/// Routes `target` (origin-form, or absolute-form whose scheme and authority are ignored:
/// the client never chooses the upstream) for method GET/HEAD. Accepts
/// `/client/v4/accounts/{a}/images/v1/{id}` and `/accounts/{a}/images/v1/{id}`; the query
/// string is ignored. `{id}` is one percent-encoded segment (`folder%2Fsub%2Fx`, as the
/// TypeScript SDK v7 sends it) or up to max_image_id_segments raw segments (`folder/sub/x`,
/// as older TypeScript, Python and Go SDKs send it); both spell the same id and key.
/// Any other target form (gateway/core/request_target.hpp: `*`,
/// authority-form, `http://h?/…`, `http://h#/…`, a fragment) → bad_request; sibling
/// endpoints and unknown paths → route_not_found: the reserved names are checked on the
/// decoded id however it is spelled (a first component `keys`, `stats` or `variants`, a last
/// component `blob` after another one), and an empty segment (`a//b`, `a/`) is no id; a bad
/// account → invalid_account_id; a bad id (empty, a `.` or `..` segment, broken escapes, not
/// UTF-8, control bytes, over 1024 bytes or 64 segments) → invalid_image_id.
/// Method checks are the caller's (they need the route to decide between 404 and 405).
route_result route_image(std::string_view target);

/// True when `decoded` may be an image id the gateway reads and keys: the checks of
/// route_image on a decoded id (1..1024 bytes, UTF-8, no control bytes, not `.`/`..`, not a
/// reserved sibling name however spelled). Listed ids (warming) pass the same rules.
bool is_servable_image_id(std::string_view decoded);

/// Decodes RFC 3986 percent-encoding. Returns false on a broken escape (`%`, `%4`, `%zz`).
bool percent_decode(std::string_view in, std::string& out);

/// Encodes `in` so that only unreserved characters (ALPHA / DIGIT / "-" / "." / "_" / "~")
/// stay literal and every other byte becomes `%XX` with upper-case hex. Applied to a decoded
/// id this is the canonical form: `a%2fb`, `a%2Fb` all give `a%2Fb`.
std::string percent_encode(std::string_view in);

/// True when `s` is well-formed UTF-8 (no overlongs, no surrogates, ≤ U+10FFFF).
bool is_valid_utf8(std::string_view s) noexcept;

/// True for `^[0-9a-f]{32}$`.
bool is_account_id(std::string_view s) noexcept;

/// The path without scheme/authority (absolute-form) and without the query string; empty
/// for a target of a form the gateway does not serve (see route_image).
std::string_view request_path(std::string_view target) noexcept;

}  // namespace imagegate::gateway
