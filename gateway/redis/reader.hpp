// Turns the bytes a Redis server sends into reply values, with hiredis 0.14's RESP2 parser
// underneath and size caps enforced while parsing: a hostile or broken server cannot make
// the client allocate without bound.
#pragma once

#include "gateway/redis/error.hpp"
#include "gateway/redis/reply.hpp"

#include <boost/system/result.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>

namespace imagegate::redis {

/// Caps on what one reply may make the client hold. Defaults fit the fleet tier: image
/// records of up to a few MiB, script results of a few elements.
struct reply_limits {
    /// One bulk string, status or error line, in bytes.
    std::size_t max_bulk_bytes = 4 * 1024 * 1024;
    /// Elements of one array header (checked before anything is allocated for them).
    std::size_t max_array_elements = 64 * 1024;
    /// Array nesting: 1 allows `*2 :1 :2`, 2 allows arrays of arrays. At most 7 (hiredis'
    /// own parser limit).
    std::size_t max_depth = 4;
    /// Everything one reply holds: its strings, its element slots and the unparsed bytes
    /// buffered for it.
    std::size_t max_reply_bytes = 8 * 1024 * 1024;
};

/// One connection's parser. hiredis builds our reply tree directly through its object hooks
/// (redisReaderCreateWithFunctions) rather than a redisReply copied afterwards: its default
/// array hook callocs `n` pointers as soon as it reads `*n`, so a 12-byte `*2147483647\r\n`
/// would cost 16 GiB before any copy could check a size. Our hooks check every cap before
/// allocating; a refusal stops the parser (hiredis reports it as out-of-memory, we report
/// the cap).
/// Thread-safety: one object per connection, used by one thread at a time.
class reply_reader {
public:
    explicit reply_reader(const reply_limits& limits = {});
    ~reply_reader();
    reply_reader(const reply_reader&) = delete;
    reply_reader& operator=(const reply_reader&) = delete;

    /// Appends received bytes. Feed what one socket read returned, then drain next(): the
    /// buffer is checked against max_reply_bytes after each drain, so the parser never holds
    /// more than max_reply_bytes plus one read.
    boost::system::result<void> feed(std::string_view bytes);

    /// The next complete reply, an empty optional if more bytes are needed, or the error
    /// (protocol_error or a cap) after which the reader is unusable and the connection must
    /// be closed.
    boost::system::result<std::optional<reply>> next();

    /// Bytes received but not yet parsed into a complete reply.
    std::size_t buffered() const noexcept;

    /// hiredis' own description of the last protocol error (escaped by the caller's log).
    std::string_view parser_message() const noexcept;

    struct state;  // the hooks' view: limits, running total, the cap that refused

private:
    boost::system::error_code fail();

    std::unique_ptr<state> state_;
    void* reader_ = nullptr;  // redisReader*; hiredis stays out of this header
    boost::system::error_code failed_;
};

}  // namespace imagegate::redis
