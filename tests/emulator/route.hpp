// Which emulator route a request path names: the Images routes of the Cloudflare API (with
// custom ids in raw segments and the reserved sibling names), or the generic echo.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace imagegate::testing {

enum class route_kind {
  outside,    ///< not under /client/v4/: 404 code 7000
  echo,       ///< anything else under /client/v4/: the generic echo
  image,      ///< accounts/{a}/images/v1/{id…}
  blob,       ///< accounts/{a}/images/v1/{id…}/blob
  images_v1,  ///< accounts/{a}/images/v1: GET lists (deprecated), POST uploads
  images_v2,  ///< accounts/{a}/images/v2: the listing with continuation tokens
  keys,       ///< accounts/{a}/images/v1/keys
  stats,      ///< accounts/{a}/images/v1/stats
  variants,   ///< accounts/{a}/images/v1/variants
  variant,    ///< accounts/{a}/images/v1/variants/{name}
  no_route,   ///< a reserved name with more after it, or an empty id: 404 code 7000
  bad_id,     ///< the id's percent-encoding is broken: 400 code 5400
};

struct api_route {
  route_kind kind = route_kind::outside;
  std::string_view account;  ///< `{a}` when the path is under accounts/{a}/, else empty
  std::string id;            ///< decoded image id (image, blob) or variant name (variant)
};

/// Classifies a path (without the query). An image id may be one percent-encoded segment
/// (`a%2Fb`) or several raw ones (`a/b`): both decode to the same id. The reserved names are
/// checked on the decoded id, whichever way it was spelled: `keys`, `stats`, `variants[/…]`
/// first, then a last component `blob` (the blob route of the id before it).
api_route parse_route(std::string_view path);

/// The route kind a decoded image id would get under images/v1/ (image for a plain id).
route_kind classify_image_id(std::string_view id);

/// %XX-decodes `s`; nullopt on a truncated or non-hex escape.
std::optional<std::string> percent_decode(std::string_view s);

}  // namespace imagegate::testing
