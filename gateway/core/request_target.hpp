// The request-target forms the gateway serves (RFC 9112 §3.2), decided once for both
// listeners and the router: origin-form, or absolute-form with an http(s) authority followed
// by a path. Pure, allocation-free.
#pragma once

#include <cstddef>
#include <string_view>

namespace imagegate {

namespace detail {

// "http://" or "https://" in any letter case (RFC 3986 §3.1: schemes are case-insensitive);
// returns the length of the scheme and "://", or 0.
constexpr std::size_t http_scheme_length(std::string_view t) noexcept {
    const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
    const auto starts = [&](std::string_view prefix) {
        if (t.size() < prefix.size()) {
            return false;
        }
        for (std::size_t i = 0; i < prefix.size(); ++i) {
            if (lower(t[i]) != prefix[i]) {
                return false;
            }
        }
        return true;
    };
    if (starts("http://")) {
        return 7;
    }
    return starts("https://") ? 8 : 0;
}

}  // namespace detail

/// Where the path of `target` starts: 0 for origin-form ("/…"), past the authority for
/// absolute-form. Returns std::string_view::npos for every other target, which is a 400:
/// - asterisk-form (`*`) and authority-form (`host:port`): we serve neither OPTIONS * nor
///   CONNECT;
/// - another scheme, an empty authority, or userinfo (`user@host`, RFC 9110 §4.2.4);
/// - an authority followed by `?` or `#` or nothing (`http://h?/x` has an empty path by
///   RFC 3986 §3.3, so a proxy in front sees another request than the path after it);
/// - a fragment anywhere (`#` is not part of any request-target form, RFC 9112 §3.2).
/// The scheme and authority of absolute-form never choose the upstream; they are ignored.
constexpr std::size_t target_path_start(std::string_view target) noexcept {
    if (target.find('#') != std::string_view::npos) {
        return std::string_view::npos;
    }
    if (target.starts_with('/')) {
        return 0;
    }
    const std::size_t scheme = detail::http_scheme_length(target);
    if (scheme == 0) {
        return std::string_view::npos;
    }
    const std::size_t end = target.find_first_of("/?", scheme);
    const std::string_view authority = target.substr(
        scheme, end == std::string_view::npos ? std::string_view::npos : end - scheme);
    if (end == std::string_view::npos || target[end] != '/' || authority.empty() ||
        authority.find('@') != std::string_view::npos) {
        return std::string_view::npos;
    }
    return end;
}

/// True for the request-target forms served (see target_path_start).
constexpr bool is_supported_target(std::string_view target) noexcept {
    return target_path_start(target) != std::string_view::npos;
}

}  // namespace imagegate
