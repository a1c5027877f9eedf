#include "config/forward.hpp"

#include <algorithm>
#include <array>

namespace imagegate::config {
namespace {

constexpr std::array<std::string_view, 6> methods{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"};

int hex_value(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/// One round of percent-decoding; a '%' not followed by two hex digits stays as it is.
std::string decode_once(std::string_view in) {
    std::string out;
    out.reserve(in.size());
    for (std::size_t i = 0; i < in.size(); ++i) {
        if (in[i] == '%' && i + 2 < in.size() && hex_value(in[i + 1]) >= 0 &&
            hex_value(in[i + 2]) >= 0) {
            out += static_cast<char>(hex_value(in[i + 1]) * 16 + hex_value(in[i + 2]));
            i += 2;
        } else {
            out += in[i];
        }
    }
    return out;
}

bool has_dot_or_control(std::string_view path) {
    std::size_t start = 0;
    for (std::size_t i = 0; i <= path.size(); ++i) {
        if (i < path.size()) {
            const auto c = static_cast<unsigned char>(path[i]);
            if (c < 0x20 || c == 0x7f) {
                return true;
            }
            if (c != '/' && c != '\\') {
                continue;
            }
        }
        const auto segment = path.substr(start, i - start);
        if (segment == "." || segment == "..") {
            return true;
        }
        start = i + 1;
    }
    return false;
}

}  // namespace

std::span<const std::string_view> forward_methods() { return methods; }

std::optional<std::string> forward_methods_error(std::span<const std::string> list) {
    for (std::size_t i = 0; i < list.size(); ++i) {
        if (std::find(methods.begin(), methods.end(), list[i]) == methods.end()) {
            return "expected methods from GET, HEAD, POST, PUT, PATCH, DELETE (upper case)";
        }
        if (std::find(list.begin(), list.begin() + static_cast<std::ptrdiff_t>(i), list[i]) !=
            list.begin() + static_cast<std::ptrdiff_t>(i)) {
            return "names " + list[i] + " twice";
        }
    }
    return std::nullopt;
}

std::optional<std::string> forward_prefix_error(std::string_view prefix) {
    if (!prefix.starts_with('/')) {
        return "must start with '/' (a path after /client/v4, e.g. \"/accounts/<id>/images/\")";
    }
    if (prefix.size() > max_forward_prefix_bytes) {
        return "must be at most " + std::to_string(max_forward_prefix_bytes) + " bytes";
    }
    const bool plain = std::all_of(prefix.begin(), prefix.end(), [](char c) {
        return c > ' ' && c < '\x7f' && c != '?' && c != '#' && c != '\\';
    });
    if (!plain || path_may_escape(prefix)) {
        return "must be visible ASCII without '?', '#', '\\' or \".\"/\"..\" segments";
    }
    return std::nullopt;
}

bool path_may_escape(std::string_view path) {
    std::string current(path);
    for (int round = 0; round < 3; ++round) {
        if (has_dot_or_control(current)) {
            return true;
        }
        auto next = decode_once(current);
        if (next == current) {
            return false;
        }
        current = std::move(next);
    }
    // Still changing after three rounds: nothing legitimate is encoded that deep.
    return true;
}

bool path_within(std::string_view path, std::string_view prefix) {
    if (!path.starts_with(prefix)) {
        return false;
    }
    return prefix.ends_with('/') || path.size() == prefix.size() || path[prefix.size()] == '/';
}

}  // namespace imagegate::config
