// One connection's life (internal to gateway/http): the TLS handshake when the listener
// speaks TLS, then the keep-alive loop that reads a request head, hands it to the handler,
// writes the reply and waits for the next request, and the orderly close.
#pragma once

#include "gateway/core/net.hpp"
#include "gateway/http/server_state.hpp"

#include <boost/asio/ip/tcp.hpp>

#include <exception>
#include <memory>

namespace imagegate::gateway::detail {

/// A plain HTTP connection, spawned by the accept loop on the session's own executor.
asio::awaitable<void> run_plain_session(std::shared_ptr<server_state> st, tcp::socket socket);

/// A TLS connection: handshake first (see session.cpp), then as a plain one.
/// `tls`: the listener's TLS context when the connection was accepted (a reload may have
/// replaced it since; the connection keeps this one).
asio::awaitable<void> run_tls_session(std::shared_ptr<server_state> st,
                                      std::shared_ptr<ssl::context> tls, tcp::socket socket);

/// Completion handler of a session: a session that throws is a bug; log it and go on.
struct session_done {
    std::shared_ptr<server_state> st;
    void operator()(const std::exception_ptr& ep) const;
};

}  // namespace imagegate::gateway::detail
