#include "gateway/fleet/events.hpp"

#include <algorithm>
#include <array>
#include <random>

namespace imagegate::fleet {
namespace {

bool is_lower_hex(std::string_view s) {
    return std::all_of(s.begin(), s.end(),
                       [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// The alphabet of a canonical id (gateway/image/route.hpp percent_encode): unreserved
// characters and %XX with upper-case hex.
bool is_canonical_id(std::string_view s) {
    if (s.empty() || s.size() > 3 * 1024) {
        return false;
    }
    for (std::size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        const bool unreserved = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
                                c == '~';
        if (unreserved) {
            continue;
        }
        if (c != '%' || i + 2 >= s.size()) {
            return false;
        }
        for (const char h : {s[i + 1], s[i + 2]}) {
            if (!((h >= '0' && h <= '9') || (h >= 'A' && h <= 'F'))) {
                return false;
            }
        }
        i += 2;
    }
    return true;
}

}  // namespace

std::string format_event(const event& e) {
    std::string out;
    out += e.kind == event_kind::purge_image     ? 'P'
           : e.kind == event_kind::purge_account ? 'A'
                                                 : 'F';
    out += ' ';
    out += e.origin;
    out += ' ';
    out += e.account;
    if (e.kind != event_kind::purge_account) {
        out += ' ';
        out += e.id;
    }
    return out;
}

std::optional<event> parse_event(std::string_view p) {
    if (p.size() < 2 || p.size() > max_event_bytes || p[1] != ' ') {
        return std::nullopt;
    }
    event e;
    switch (p[0]) {
    case 'P': e.kind = event_kind::purge_image; break;
    case 'A': e.kind = event_kind::purge_account; break;
    case 'F': e.kind = event_kind::filled; break;
    default: return std::nullopt;
    }
    std::array<std::string_view, 3> fields{};
    std::size_t n = 0;
    std::string_view rest = p.substr(2);
    while (!rest.empty()) {
        if (n == fields.size()) {
            return std::nullopt;
        }
        const auto sp = rest.find(' ');
        fields[n++] = rest.substr(0, sp);
        if (sp == std::string_view::npos) {
            rest = {};
        } else {
            rest = rest.substr(sp + 1);
            if (rest.empty()) {
                return std::nullopt;  // trailing space
            }
        }
    }
    const std::size_t want = e.kind == event_kind::purge_account ? 2 : 3;
    if (n != want || fields[0].size() != 16 || !is_lower_hex(fields[0]) || fields[1].size() != 32 ||
        !is_lower_hex(fields[1])) {
        return std::nullopt;
    }
    if (want == 3 && !is_canonical_id(fields[2])) {
        return std::nullopt;
    }
    e.origin.assign(fields[0]);
    e.account.assign(fields[1]);
    if (want == 3) {
        e.id.assign(fields[2]);
    }
    return e;
}

std::string random_instance_id() {
    std::random_device rd;
    const std::uint64_t v = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
    static constexpr char hex[] = "0123456789abcdef";
    std::string out(16, '0');
    for (std::size_t i = 0; i < 16; ++i) {
        out[i] = hex[(v >> (4 * (15 - i))) & 0xf];
    }
    return out;
}

}  // namespace imagegate::fleet
