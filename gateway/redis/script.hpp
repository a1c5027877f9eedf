// A Lua script for EVALSHA/EVAL: its body and the SHA1 Redis knows it by, computed once
// locally, so the first call can already try EVALSHA.
#pragma once

#include <memory>
#include <string>
#include <string_view>

namespace imagegate::redis {

/// An immutable script. Copies share the body (a reference count), so passing it by value
/// to a coroutine is cheap. Thread-safety: any thread (immutable).
class script {
public:
    explicit script(std::string body);

    const std::string& body() const noexcept { return data_->body; }
    /// 40 lowercase hex digits, as SCRIPT LOAD returns and EVALSHA expects.
    const std::string& sha1() const noexcept { return data_->sha1; }

private:
    struct data {
        std::string body;
        std::string sha1;
    };
    std::shared_ptr<const data> data_;
};

/// SHA1 of `bytes` as 40 lowercase hex digits (OpenSSL EVP).
std::string sha1_hex(std::string_view bytes);

}  // namespace imagegate::redis
