// UTF-8 decoding of one sequence (RFC 3629), shared by id validation and log escaping.
#pragma once

#include <cstddef>
#include <string_view>

namespace imagegate {

/// The length of the well-formed UTF-8 sequence starting at s[i] (1 for ASCII) and its code
/// point in `cp`, or 0 when the byte at s[i] starts none: a stray continuation byte, an
/// overlong form, a surrogate, a code point above U+10FFFF or a truncated sequence.
/// Precondition: i < s.size().
inline std::size_t utf8_sequence(std::string_view s, std::size_t i, char32_t& cp) noexcept {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t len = 0;
    if (c < 0x80) {
        cp = c;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1fu;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0fu;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07u;
    } else {
        return 0;  // continuation byte, C0/C1 (overlong two-byte forms), F5..FF
    }
    if (s.size() - i < len) {
        return 0;
    }
    for (std::size_t k = 1; k < len; ++k) {
        const auto cc = static_cast<unsigned char>(s[i + k]);
        if ((cc & 0xc0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (cc & 0x3fu);
    }
    const bool overlong = (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000);
    if (overlong || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }
    return len;
}

/// True when `s` is well-formed UTF-8 throughout.
inline bool is_valid_utf8(std::string_view s) noexcept {
    char32_t cp = 0;
    for (std::size_t i = 0; i < s.size();) {
        const std::size_t len = utf8_sequence(s, i, cp);
        if (len == 0) {
            return false;
        }
        i += len;
    }
    return true;
}

}  // namespace imagegate
