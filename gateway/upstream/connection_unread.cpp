// What waits unread on an upstream connection beyond the answer just read (our buffer aside):
// non-blocking looks at the socket and the TLS layers, and the prompt ACK that brings bytes
// sent right behind an answer into their view. The evidence behind may_reuse and the checks
// before a connection is lent or written on (see the argument above connection::exchange).
#include "gateway/upstream/connection.hpp"

#include <boost/asio/buffer.hpp>

#include <openssl/bio.h>
#include <openssl/ssl.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

namespace imagegate::upstream {

bool connection::is_idle_and_open() noexcept {
    if (closed_.load(std::memory_order_relaxed)) {
        return false;
    }
    auto& socket = lowest().socket();
    if (!socket.is_open()) {
        return false;
    }
    // The bytes waiting in the socket (Asio's available(), without its error plumbing): a
    // TLS peer's close_notify or a stray response shows here. A bare FIN (no bytes) does
    // not; writing on such a connection fails before any answer byte, which the client
    // retries on a fresh connection. FIONREAD is a plain syscall, where a MSG_PEEK recv()
    // also pays for being a thread-cancellation point (about 60 instructions, three times
    // per miss).
    int waiting = 0;
    return ::ioctl(socket.native_handle(), FIONREAD, &waiting) == 0 && waiting == 0;
}

void connection::acknowledge_now() noexcept {
#ifdef TCP_QUICKACK
    // Not sticky: it sends the pending ACK and leaves delayed-ACK mode until the kernel
    // re-enters it, so it is set after every response. A failure only loses the hint.
    const int one = 1;
    (void)::setsockopt(lowest().socket().native_handle(), IPPROTO_TCP, TCP_QUICKACK, &one,
                       sizeof one);
#endif
}

bool connection::has_unread_beyond_buffer() noexcept {
    if (tls_) {
        // Decrypted data OpenSSL holds, or records it has read from its BIO pair and not yet
        // processed; then ciphertext in the BIO pair that Asio fed it. Asio's own input
        // buffer (not inspectable) holds only ciphertext a full 17 KiB BIO had no room for;
        // for that to be all that is left, the upstream must end its answer exactly at that
        // boundary, and the bytes are then the residual case argued above exchange().
        SSL* ssl = tls_->native_handle();
        if (SSL_has_pending(ssl) == 1) {
            return true;
        }
        BIO* rbio = SSL_get_rbio(ssl);
        if (rbio != nullptr && BIO_ctrl_pending(rbio) > 0) {
            return true;
        }
    }
    return !is_idle_and_open();
}

bool connection::read_application_byte() noexcept {
    auto& socket = lowest().socket();
    if (!socket.is_open()) {
        return false;
    }
    if (!tls_) {
        char byte = 0;
        return ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
    }
    // A synchronous read on a non-blocking socket returns would_block instead of waiting;
    // the TLS engine keeps a partial record for later (the connection is closed anyway).
    boost::system::error_code ec;
    socket.non_blocking(true, ec);
    if (ec) {
        return false;
    }
    char byte = 0;
    const std::size_t n = tls_->read_some(asio::buffer(&byte, 1), ec);
    return n > 0;
}

}  // namespace imagegate::upstream
