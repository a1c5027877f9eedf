// The RESP2 reply value the client hands to callers: owns its bytes, no hiredis type leaks
// out, so the codec underneath can be replaced (Boost.Redis) without changing callers.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <string_view>
#include <vector>

namespace imagegate::redis {

/// The RESP2 reply types.
enum class reply_kind : std::uint8_t {
    nil,      ///< `$-1` or `*-1`: a missing key, a timed-out blocking pop
    status,   ///< `+OK`, `+PONG`
    error,    ///< `-ERR …`, `-NOSCRIPT …`: a value, not a client error
    integer,  ///< `:42`
    string,   ///< `$n` bulk string, binary-safe
    array,    ///< `*n`, elements may be arrays themselves
};

std::string_view to_string(reply_kind k) noexcept;
std::ostream& operator<<(std::ostream& os, reply_kind k);

/// One reply. A plain value: copy, move and compare freely. Thread-safety: distinct objects
/// safe, shared const objects safe.
struct reply {
    reply_kind kind = reply_kind::nil;
    /// The value of an integer reply.
    std::int64_t integer = 0;
    /// The bytes of a status, error or bulk string reply (binary-safe, never NUL-terminated
    /// by contract). Hostile bytes: log them only through printable().
    std::string text;
    /// The elements of an array reply.
    std::vector<reply> elements;

    bool is_nil() const noexcept { return kind == reply_kind::nil; }
    bool is_error() const noexcept { return kind == reply_kind::error; }
    bool is_status(std::string_view s) const noexcept {
        return kind == reply_kind::status && text == s;
    }
    /// The first word of an error reply ("NOSCRIPT", "WRONGPASS", "ERR"); empty otherwise.
    std::string_view error_code() const noexcept;

    static reply make_nil() { return {}; }
    static reply make_status(std::string s) { return {reply_kind::status, 0, std::move(s), {}}; }
    static reply make_error(std::string s) { return {reply_kind::error, 0, std::move(s), {}}; }
    static reply make_integer(std::int64_t v) { return {reply_kind::integer, v, {}, {}}; }
    static reply make_string(std::string s) { return {reply_kind::string, 0, std::move(s), {}}; }
    static reply make_array(std::vector<reply> e) {
        return {reply_kind::array, 0, {}, std::move(e)};
    }

    friend bool operator==(const reply&, const reply&) = default;
};

/// Test and log rendering: `string "a\x00b"`, `array [integer 1, nil]`; bytes escaped and
/// long texts cut (printable()).
std::ostream& operator<<(std::ostream& os, const reply& r);

/// `bytes` made safe for one log line: printable ASCII kept except `\` and `"`, everything
/// else as `\xNN`; cut after `max` input bytes with the total size appended. A server's
/// bytes (error messages, payloads) reach logs only through this: a hostile server must not
/// forge log lines or terminal escapes.
std::string printable(std::string_view bytes, std::size_t max = 120);

}  // namespace imagegate::redis
