// The pure parser of one v2 listing page (`GET /accounts/{a}/images/v2`): its continuation
// token, and every listed image checked as the detail answer it becomes. No I/O; table-tested
// and fuzzed (tests/fuzz/page_fuzz.cpp).
#pragma once

#include "gateway/validate/image_record.hpp"

#include <simdjson.h>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace imagegate::warm {

/// Longest continuation token accepted (Cloudflare's are 32 characters; it goes back
/// upstream in a query string and into progress JSON).
inline constexpr std::size_t max_token_bytes = 256;

/// One listed image, valid by the rules of a detail answer.
struct listed_image {
    std::string id;            ///< decoded id (result.id)
    std::string canonical_id;  ///< the cache key's id (gateway::percent_encode of `id`)
    /// The detail envelope `images.v1.get` answers for it:
    /// `{"result":<the listed object, byte for byte>,"success":true,"errors":[],"messages":[]}`.
    std::string body;
    bool draft = false;  ///< result.draft: stored with the draft TTL

    friend bool operator==(const listed_image&, const listed_image&) = default;
};

/// What one page gave.
struct page {
    /// The page as a whole is unusable (not the listing's shape, `success` not true, more
    /// items than asked for, a bad token, broken JSON): nothing of it may be stored.
    std::optional<validate::violation> failure;
    std::vector<listed_image> images;  ///< the valid items, in listing order
    std::size_t invalid = 0;           ///< items refused (bad id, bad record): never stored
    /// The next page's token; empty when this was the last page (`null` or absent).
    std::optional<std::string> continuation;

    bool ok() const noexcept { return !failure; }
};

/// True for a token that may go back upstream as is: 1..max_token_bytes characters, all
/// RFC 3986 unreserved (no escaping needed, nothing that could end a query parameter).
bool is_continuation_token(std::string_view t) noexcept;

/// The detail envelope for a listed Image object (its raw JSON).
std::string detail_envelope(std::string_view image_json);

/// Parses a 200 listing answer `{"result":{"images":[Image…],"continuation_token":…},
/// "success":true,…}`. Each item is an object whose `id` passes
/// gateway::is_servable_image_id and whose detail envelope passes validate::validate_image
/// for that id; anything else is counted in `invalid`. More than `max_items` items (the
/// page size asked for) fail the page. `capacity` as for validate_image. The two parsers are
/// the caller's (one per thread; they must differ: items are checked while the page is read).
page parse_page(std::string_view json, std::size_t capacity, std::size_t max_items,
                simdjson::ondemand::parser& page_parser, simdjson::ondemand::parser& item_parser);

/// `result.count.current` of a 200 `GET …/images/v1/stats` answer (the images an account
/// holds: the ETA's total), when it is an integer up to 10^12; nothing otherwise.
std::optional<std::uint64_t> parse_image_count(std::string_view json, std::size_t capacity,
                                               simdjson::ondemand::parser& parser);

}  // namespace imagegate::warm
