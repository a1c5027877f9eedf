// Escaping of untrusted bytes (request targets, upstream member names, any value a client or
// the upstream chose) for the log, so that no value can end a line, forge a field or hide
// behind terminal or bidirectional control characters, in text and JSON alike.
#pragma once

#include "gateway/core/utf8.hpp"

#include <fmt/core.h>

#include <cstdint>
#include <iterator>
#include <string_view>

namespace imagegate {

/// How `escape_to` treats bytes.
enum class escape_mode : std::uint8_t {
    /// A value inside a text-format line: `"` and `\` escaped too (values may be quoted),
    /// invalid UTF-8 as `\xNN` (the bytes stay recoverable).
    text,
    /// The contents of a JSON string (RFC 8259 §7): `"` and `\` escaped, invalid UTF-8 as
    /// U+FFFD (JSON has no byte escapes), so the result is always valid UTF-8.
    json,
    /// A whole text-format message, as the last line of defence for call sites that format
    /// values unescaped: only what could end or disguise a line (controls, invalid UTF-8),
    /// so values escaped at their call site are not escaped twice.
    line,
};

namespace detail {

// Code points above ASCII that are still escaped: C1 controls (U+0085 is a line break to
// some readers), the Unicode line and paragraph separators, and the bidirectional
// overrides and isolates that make a terminal show text in another order than it is.
constexpr bool is_disguising(char32_t cp) noexcept {
    return (cp >= 0x80 && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 ||
           (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

template <class OutputIt>
OutputIt put(OutputIt out, std::string_view s) {
    for (const char c : s) {
        *out++ = c;
    }
    return out;
}

template <class OutputIt>
OutputIt put_u(OutputIt out, char32_t cp) {
    static constexpr char hex[] = "0123456789abcdef";
    out = put(out, "\\u");
    for (int shift = 12; shift >= 0; shift -= 4) {
        *out++ = hex[(cp >> shift) & 0xfu];
    }
    return out;
}

}  // namespace detail

/// Writes `in` escaped as `mode` says to `out` (an output iterator of char) and returns the
/// iterator past the last character written. Well-formed UTF-8 other than the disguising
/// code points above passes unchanged; ASCII controls become `\n`, `\r`, `\t` or `\u00XX`.
template <class OutputIt>
OutputIt escape_to(OutputIt out, std::string_view in, escape_mode mode) {
    static constexpr char hex[] = "0123456789abcdef";
    const bool quote_specials = mode != escape_mode::line;
    std::size_t i = 0;
    while (i < in.size()) {
        const auto c = static_cast<unsigned char>(in[i]);
        if (c >= 0x20 && c < 0x7f) {
            if (quote_specials && (c == '"' || c == '\\')) {
                *out++ = '\\';
            }
            *out++ = static_cast<char>(c);
            ++i;
            continue;
        }
        if (c < 0x80) {
            switch (c) {
            case '\n': out = detail::put(out, "\\n"); break;
            case '\r': out = detail::put(out, "\\r"); break;
            case '\t': out = detail::put(out, "\\t"); break;
            default: out = detail::put_u(out, c);
            }
            ++i;
            continue;
        }
        char32_t cp = 0;
        const std::size_t len = utf8_sequence(in, i, cp);
        if (len == 0) {
            if (mode == escape_mode::json) {
                out = detail::put(out, "\\ufffd");
            } else {
                out = detail::put(out, "\\x");
                *out++ = hex[c >> 4];
                *out++ = hex[c & 0xfu];
            }
            ++i;
            continue;
        }
        if (detail::is_disguising(cp)) {
            out = detail::put_u(out, cp);
        } else {
            out = detail::put(out, in.substr(i, len));
        }
        i += len;
    }
    return out;
}

/// A value formatted (by fmt/spdlog) escaped for a text-format line, without quotes: for
/// values that are a single token by construction (ids, method names).
struct escaped_value {
    std::string_view value;
};
inline escaped_value log_escaped(std::string_view v) noexcept { return {v}; }

/// A value formatted in double quotes, escaped for a text-format line.
struct quoted_value {
    std::string_view value;
};
inline quoted_value log_quoted(std::string_view v) noexcept { return {v}; }

/// A value formatted as a JSON string (quotes included), for structured JSON log members.
struct json_value {
    std::string_view value;
};
inline json_value json_string(std::string_view v) noexcept { return {v}; }

}  // namespace imagegate

namespace imagegate {

/// `value` escaped for `mode` between double quotes.
template <class Out>
Out quote_to(Out out, std::string_view value, escape_mode mode) {
    *out++ = '"';
    out = escape_to(out, value, mode);
    *out++ = '"';
    return out;
}

}  // namespace imagegate

template <>
struct fmt::formatter<imagegate::escaped_value> {
    constexpr auto parse(fmt::format_parse_context& ctx) { return ctx.begin(); }
    template <class FormatContext>
    auto format(const imagegate::escaped_value& v, FormatContext& ctx) const {
        return imagegate::escape_to(ctx.out(), v.value, imagegate::escape_mode::text);
    }
};

template <>
struct fmt::formatter<imagegate::quoted_value> {
    constexpr auto parse(fmt::format_parse_context& ctx) { return ctx.begin(); }
    template <class FormatContext>
    auto format(const imagegate::quoted_value& v, FormatContext& ctx) const {
        return imagegate::quote_to(ctx.out(), v.value, imagegate::escape_mode::text);
    }
};

template <>
struct fmt::formatter<imagegate::json_value> {
    constexpr auto parse(fmt::format_parse_context& ctx) { return ctx.begin(); }
    template <class FormatContext>
    auto format(const imagegate::json_value& v, FormatContext& ctx) const {
        return imagegate::quote_to(ctx.out(), v.value, imagegate::escape_mode::json);
    }
};
