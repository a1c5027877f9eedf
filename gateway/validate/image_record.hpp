// Validation of upstream answers before anything is cached: a 200 "image details" record,
// and the Cloudflare error envelope of a non-200 answer.
#pragma once

#include <boost/system/error_code.hpp>

#include <simdjson.h>

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>

namespace imagegate::validate {

/// The first rule a document breaks. Safe to log; never sent to clients.
struct violation {
    /// RFC 6901 JSON pointer to the offending value ("" = the whole document); for a missing
    /// field, where it should have been.
    std::string pointer{};
    /// What is wrong, in terms of field names and limits; never quotes the document's values.
    std::string reason{};

    friend bool operator==(const violation&, const violation&) = default;
};
std::ostream& operator<<(std::ostream& os, const violation& v);

/// Outcome of `validate_image`.
struct validation {
    std::optional<validate::violation> failure{};  ///< empty: the record is valid
    bool draft = false;  ///< result.draft when valid (an unfinished direct upload)

    bool ok() const noexcept { return !failure; }
    /// {} when valid, otherwise imagegate::errc::invalid_upstream_json.
    boost::system::error_code error() const noexcept;

    friend bool operator==(const validation&, const validation&) = default;
};
std::ostream& operator<<(std::ostream& os, const validation& v);

/// Outcome of `validate_error_envelope`.
struct error_envelope {
    std::optional<validate::violation> failure{};  ///< empty: the envelope is valid
    std::uint32_t code = 0;                        ///< errors[0].code when valid (5404: not found)

    bool ok() const noexcept { return !failure; }
    /// {} when valid, otherwise imagegate::errc::invalid_upstream_json.
    boost::system::error_code error() const noexcept;

    friend bool operator==(const error_envelope&, const error_envelope&) = default;
};
std::ostream& operator<<(std::ostream& os, const error_envelope& e);

/// Deepest nesting accepted anywhere in a document (the top-level object is depth 1). Real
/// records nest 3 levels; the limit bounds the validator's recursion.
inline constexpr int max_depth = 64;

/// Validates the body of a 200 answer for image `expected_id` (the decoded id; compared with
/// result.id after JSON unescaping). Rules, first violation wins:
/// - exactly one JSON object, nothing but whitespace after it;
/// - `success` true; `errors` an array of objects; `messages` an array; all three required;
/// - `result` an object with `id` (string, equal to expected_id) and optional `creator`
///   (string ≤ 1024 bytes, or null), `filename` (string ≤ 255 bytes), `meta` (object, raw
///   JSON ≤ 1024 bytes), `requireSignedURLs` (bool), `uploaded` (string), `variants` (array
///   of strings), `draft` (bool);
/// - `result_info` null or an object;
/// - a known field appears at most once; unknown fields are allowed anywhere and are walked
///   to the last byte, so every byte of the document is checked as JSON (On-Demand checks
///   only what is read).
///
/// `capacity` is the allocated size of the buffer `json` starts at. With at least
/// json.size() + SIMDJSON_PADDING the buffer is parsed in place; otherwise the body is first
/// copied into a padded buffer (one allocation), so nothing past `capacity` is ever read.
///
/// `parser` is owned by the caller (one per thread or session, reused: it keeps its buffers
/// sized for the largest document seen) and must not be used by another thread meanwhile.
validation validate_image(std::string_view json, std::size_t capacity, std::string_view expected_id,
                          simdjson::ondemand::parser& parser);

/// Validates the body of a non-200 answer as a Cloudflare error envelope: `success` false;
/// `errors` a non-empty array of objects each with `code` (integer 0..2^32-1) and `message`
/// (string); `messages` an array; `result` null or absent; unknown fields walked as above.
/// Returns errors[0].code. `capacity` and `parser` as for `validate_image`.
error_envelope validate_error_envelope(std::string_view json, std::size_t capacity,
                                       simdjson::ondemand::parser& parser);

}  // namespace imagegate::validate
