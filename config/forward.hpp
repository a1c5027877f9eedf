// The rules of forwarding grants (`[forward] anonymous_methods`, a client key's `forward` and
// `forward_prefixes`): which methods a grant may name, what a prefix may look like, and which
// request paths could leave a granted prefix. Shared by config/ and gateway/auth.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace imagegate::config {

/// Prefixes one client key may list, and the length of each.
inline constexpr std::size_t max_forward_prefixes = 32;
inline constexpr std::size_t max_forward_prefix_bytes = 512;

/// The methods a grant may name: GET HEAD POST PUT PATCH DELETE (exact, upper case).
std::span<const std::string_view> forward_methods();

/// Why `methods` is not a valid grant (an unknown or repeated method), or nothing.
std::optional<std::string> forward_methods_error(std::span<const std::string> methods);

/// Why `prefix` is not a valid forward prefix, or nothing. A prefix starts with '/', is at
/// most max_forward_prefix_bytes of visible ASCII without '?', '#' or '\', and passes
/// path_may_escape().
std::optional<std::string> forward_prefix_error(std::string_view prefix);

/// Whether `path` (after /client/v4, no query) could mean a different path once a server
/// decodes and normalizes it: a "." or ".." segment after percent-decoding (up to three
/// rounds; '/' and '\' both separate segments, raw or encoded), or a control byte. Such a path
/// could leave a granted account or prefix, so it is never forwarded with the gateway's token.
bool path_may_escape(std::string_view path);

/// Whether `path` lies inside `prefix`: `path` starts with it, and when the prefix does not
/// end in '/', the path ends there or continues with '/'.
bool path_within(std::string_view path, std::string_view prefix);

}  // namespace imagegate::config
