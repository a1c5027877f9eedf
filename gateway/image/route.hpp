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
    std::string canonical_id;  ///< re-encoded one fixed way; keys the cache, goes upstream

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
    /// Re-encoded one fixed way; keys the cache, goes upstream.
    std::string_view canonical_id() const noexcept { return owned_ ? canonical_ : segment_; }
    /// The cache key, as views (no allocation).
    cache::key_view key() const noexcept { return {account(), canonical_id()}; }
    image_route to_route() const;

private:
    friend image_target parse_image_target(std::string_view target);

    std::string_view account_;  // into the target
    std::string_view segment_;  // into the target: the id segment, canonical unless owned_
    bool owned_ = false;        // the segment needed decoding or re-encoding
    std::string decoded_;       // set when owned_
    std::string canonical_;     // set when owned_
};

/// Routes `target` like `route_image` (same rules, same errors), without copying when the id
/// segment is canonical.
image_target parse_image_target(std::string_view target);

/// Largest decoded image id accepted (Cloudflare custom ids are at most 1024 bytes).
inline constexpr std::size_t max_image_id_bytes = 1024;

/// Routes `target` (origin-form, or absolute-form whose scheme and authority are ignored:
/// the client never chooses the upstream) for method GET/HEAD. Accepts
/// `/client/v4/accounts/{a}/images/v1/{id}` and `/accounts/{a}/images/v1/{id}`; the query
/// string is ignored. Any other target form (gateway/core/request_target.hpp: `*`,
/// authority-form, `http://h?/…`, `http://h#/…`, a fragment) → bad_request; sibling
/// endpoints (keys, stats, variants, {id}/blob) and unknown paths → route_not_found; a bad
/// account → invalid_account_id; a bad id (empty, `.`, `..`, broken escapes, not UTF-8,
/// control bytes, over 1024 bytes) → invalid_image_id.
/// Method checks are the caller's (they need the route to decide between 404 and 405).
route_result route_image(std::string_view target);

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
