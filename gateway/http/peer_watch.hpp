// Noticing that a client hung up while its request is being answered, without reading from
// its socket, so the handler can be cancelled. Internal to gateway/http (used by session.cpp).
#pragma once

#include "gateway/core/net.hpp"

#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <memory>

namespace imagegate::gateway::detail {

using tcp = asio::ip::tcp;

// Watches a client's socket while its request is being answered: a client that hangs up
// (FIN or reset) cancels the handler, which then leaves its flight, so a fetch nobody waits
// for any more gives its budget slot back. Bytes the client sends meanwhile (a pipelined
// request, TLS records such as close_notify) cannot be told from a live client: the watch
// then stops. It never reads: the bytes stay for the next request. A plain completion
// handler rather than a coroutine racing the handler: the miss path pays one socket wait.
struct peer_watch {
    asio::cancellation_signal signal;
    bool answered = false;  // the handler finished: the socket may be gone, touch nothing
    bool gone = false;
};

struct peer_watch_handler {
    std::shared_ptr<peer_watch> watch;
    tcp::socket* socket;  // valid while !watch->answered (same executor as the session)

    void operator()(const boost::system::error_code& ec) const {
        if (watch->answered || ec == asio::error::operation_aborted) {
            return;
        }
        if (!ec) {
            char byte = 0;
            boost::system::error_code peek_ec;
            const std::size_t n =
                socket->receive(asio::buffer(&byte, 1), tcp::socket::message_peek, peek_ec);
            if (peek_ec == asio::error::would_block || peek_ec == asio::error::try_again) {
                socket->async_wait(tcp::socket::wait_read, *this);  // spurious readiness
                return;
            }
            if (!peek_ec && n > 0) {
                return;  // data: a live client as far as we can tell
            }
        }
        watch->gone = true;  // EOF, reset, or the socket closed under us
        watch->signal.emit(asio::cancellation_type::terminal);
    }
};

// Arms the watch for one handler call; ends it on every exit (the answer, or a throw).
class peer_watch_scope {
public:
    explicit peer_watch_scope(tcp::socket& socket)
        : socket_(socket), watch_(std::make_shared<peer_watch>()) {
        socket_.async_wait(tcp::socket::wait_read, peer_watch_handler{watch_, &socket_});
    }
    ~peer_watch_scope() {
        watch_->answered = true;
        boost::system::error_code ignored;
        socket_.cancel(ignored);  // the pending wait, if any: it completes as aborted
    }
    peer_watch_scope(const peer_watch_scope&) = delete;
    peer_watch_scope& operator=(const peer_watch_scope&) = delete;

    asio::cancellation_slot slot() const { return watch_->signal.slot(); }
    bool gone() const { return watch_->gone; }

private:
    tcp::socket& socket_;
    std::shared_ptr<peer_watch> watch_;
};

}  // namespace imagegate::gateway::detail
