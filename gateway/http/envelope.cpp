#include "gateway/http/envelope.hpp"

#include <cstdio>

namespace imagegate::gateway {

void append_json_escaped(std::string& out, std::string_view s) {
    for (const char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        switch (ch) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
            if (c < 0x20) {
                char buf[8];
                std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
                out += buf;
            } else {
                out.push_back(ch);
            }
        }
    }
}

std::string error_envelope(std::uint32_t code, std::string_view message) {
    std::string out;
    out.reserve(96 + message.size());
    out += R"({"success":false,"errors":[{"code":)";
    out += std::to_string(code);
    out += R"(,"message":")";
    append_json_escaped(out, message);
    out += R"("}],"messages":[],"result":null})";
    return out;
}

std::string error_envelope(errc e) {
    return error_envelope(to_envelope_code(e), to_client_message(e));
}

}  // namespace imagegate::gateway
