#include "cache/key.hpp"

#include <ostream>

namespace imagegate::cache {

key::key(std::string_view account, std::string_view image_id) : split_(account.size()) {
    bytes_.reserve(account.size() + 1 + image_id.size());
    bytes_.assign(account).push_back('\0');
    bytes_.append(image_id);
}

std::size_t key::heap_bytes() const noexcept {
    // An empty std::string's capacity is the small-string buffer size (15 in libstdc++).
    constexpr std::size_t sso_capacity = std::string().capacity();
    return bytes_.capacity() > sso_capacity ? bytes_.capacity() + 1 : 0;
}

namespace {

void write_escaped(std::ostream& os, std::string_view bytes) {
    static constexpr char hex[] = "0123456789abcdef";
    for (const char c : bytes) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u >= 0x7f || c == '"' || c == '\\') {
            os << "\\x" << hex[u >> 4] << hex[u & 0xf];
        } else {
            os << c;
        }
    }
}

}  // namespace

std::ostream& operator<<(std::ostream& os, key_view k) {
    write_escaped(os, k.account());
    os << "/\"";
    write_escaped(os, k.image_id());
    return os << '"';
}

std::ostream& operator<<(std::ostream& os, const key& k) { return os << k.view(); }

}  // namespace imagegate::cache
