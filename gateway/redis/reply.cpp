#include "gateway/redis/reply.hpp"

#include <ostream>

namespace imagegate::redis {

std::string_view to_string(reply_kind k) noexcept {
    switch (k) {
    case reply_kind::nil: return "nil";
    case reply_kind::status: return "status";
    case reply_kind::error: return "error";
    case reply_kind::integer: return "integer";
    case reply_kind::string: return "string";
    case reply_kind::array: return "array";
    }
    return "unknown";
}

std::ostream& operator<<(std::ostream& os, reply_kind k) { return os << to_string(k); }

std::string_view reply::error_code() const noexcept {
    if (kind != reply_kind::error) {
        return {};
    }
    const std::string_view t = text;
    return t.substr(0, t.find(' '));
}

std::ostream& operator<<(std::ostream& os, const reply& r) {
    os << r.kind;
    switch (r.kind) {
    case reply_kind::nil: break;
    case reply_kind::integer: os << ' ' << r.integer; break;
    case reply_kind::status:
    case reply_kind::error:
    case reply_kind::string: os << " \"" << printable(r.text) << '"'; break;
    case reply_kind::array: {
        os << " [";
        for (std::size_t i = 0; i < r.elements.size(); ++i) {
            if (i == 16) {
                os << ", …" << r.elements.size() << " elements";
                break;
            }
            os << (i == 0 ? "" : ", ") << r.elements[i];
        }
        os << ']';
        break;
    }
    }
    return os;
}

std::string printable(std::string_view bytes, std::size_t max) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    const std::size_t n = bytes.size() < max ? bytes.size() : max;
    out.reserve(n + 16);
    for (std::size_t i = 0; i < n; ++i) {
        const auto c = static_cast<unsigned char>(bytes[i]);
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"') {
            out.push_back(static_cast<char>(c));
        } else {
            out += "\\x";
            out.push_back(hex[c >> 4]);
            out.push_back(hex[c & 0xf]);
        }
    }
    if (n < bytes.size()) {
        out += "…(" + std::to_string(bytes.size()) + " bytes)";
    }
    return out;
}

}  // namespace imagegate::redis
