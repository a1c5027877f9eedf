#include "gateway/redis/script.hpp"

#include <openssl/evp.h>

#include <stdexcept>

namespace imagegate::redis {

std::string sha1_hex(std::string_view bytes) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_Digest(bytes.data(), bytes.size(), digest, &len, EVP_sha1(), nullptr) != 1) {
        throw std::runtime_error("EVP_Digest(SHA1) failed");
    }
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    out.reserve(2 * len);
    for (unsigned int i = 0; i < len; ++i) {
        out.push_back(hex[digest[i] >> 4]);
        out.push_back(hex[digest[i] & 0xf]);
    }
    return out;
}

script::script(std::string body) {
    auto d = std::make_shared<data>();
    d->sha1 = sha1_hex(body);
    d->body = std::move(body);
    data_ = std::move(d);
}

}  // namespace imagegate::redis
