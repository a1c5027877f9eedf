// A scripted raw TLS upstream for integrity tests: each request is answered with exact bytes
// chosen by the prefix of its image id (interim heads, late or duplicate answers,
// close-delimited bodies, 101), and every request it read is recorded for the test.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace imagegate::testing {

/// One request as the scripted upstream read it.
struct scripted_request {
    std::string target;               ///< request-target as sent
    std::string account;              ///< the segment after /accounts/ (empty if none)
    std::string image_id;             ///< the segment after /images/v1/, percent-decoded
    std::string credential;           ///< Bearer token or X-Auth-Key value; empty without one
    std::uint64_t seq = 0;            ///< 1-based number of the request on the upstream
    std::uint64_t connection = 0;     ///< 1-based number of the TCP connection it came on
    std::uint64_t on_connection = 0;  ///< 1-based position on that connection
};

/// Construction-time settings.
struct scripted_upstream_options {
    /// Credentials (Bearer token or X-Auth-Key) answered 403 code 10000 whatever the path.
    std::vector<std::string> refused_credentials;
    /// How long `early103-` waits between its 103 and its final answer.
    std::chrono::milliseconds late_answer{500};
    /// How long `double-` and `double5404-` wait after the answer before the stray response.
    std::chrono::milliseconds stray_delay{300};
};

/// The server. Each connection is served in order, one request at a time, the way a real
/// HTTP/1.1 server does (a script's delays hold the requests queued behind it). Scripts, by
/// the prefix of the image id (anything else: the 200 record, Content-Length framed):
///
/// | prefix | bytes |
/// |---|---|
/// | `missing-` | 404 with a 5404 envelope |
/// | `early103-` | `103 Early Hints`, then after `late_answer` the 200 record |
/// | `same-packet-100-`, `same-packet-103-` | the 1xx head and the 200 record in one write |
/// | `many1xx-N-` | N `103` heads and the 200 record in one write (N one digit) |
/// | `double-` | the 200 record, then after `stray_delay` the same record again |
/// | `double5404-` | the 200 record, then after `stray_delay` a 404 5404 |
/// | `trailing-` | the 200 record, then at once (its own TLS record) a 404 5404 |
/// | `glued-` | the 200 record and a 404 5404 behind it in one write (one TLS record): the stray is
/// always there when the answer ends | | `close-delim-` | the 200 record without Content-Length,
/// then close_notify and close | | `switch101-` | `101 Switching Protocols` (Upgrade: h2c), nothing
/// else |
///
/// A request with a refused credential gets 403 code 10000 instead, whatever its id.
/// Thread-safety: every member may be called from any thread while the server runs on its
/// own thread (started by the constructor, joined by the destructor).
class scripted_upstream {
public:
    /// Generates a test PKI, binds 127.0.0.1:0 and starts serving.
    explicit scripted_upstream(scripted_upstream_options o = {});
    ~scripted_upstream();
    scripted_upstream(const scripted_upstream&) = delete;
    scripted_upstream& operator=(const scripted_upstream&) = delete;

    std::uint16_t port() const noexcept;
    /// "https://127.0.0.1:PORT/client/v4".
    std::string base_url() const;
    /// The CA that signed the server certificate (SAN 127.0.0.1, localhost).
    const std::string& ca_pem() const noexcept;

    /// Every request read so far, in order.
    std::vector<scripted_request> requests() const;
    /// Requests read so far whose decoded image id is `image_id`.
    std::size_t requests_for(std::string_view image_id) const;
    /// TCP connections accepted so far.
    std::uint64_t connections_accepted() const;
    /// Stray responses (of `double-`, `double5404-`, `trailing-`, `glued-`) completely written so
    /// far.
    std::uint64_t strays_sent() const;
    /// Waits until strays_sent() >= n or `limit` passes; true if reached.
    bool wait_for_strays(std::uint64_t n, std::chrono::milliseconds limit) const;

    struct state;

private:
    std::shared_ptr<state> state_;
};

/// The body of the 200 record the scripted upstream sends for request number `seq` (for
/// account `account`, image `image_id`): a valid image record whose result.meta names the
/// account and the request, so a test can tell whose answer a client received.
std::string scripted_record(std::string_view account, std::string_view image_id, std::uint64_t seq);

/// The marker of `account`'s answers inside a record body: `"account":"<account>"`.
std::string account_marker(std::string_view account);

}  // namespace imagegate::testing
