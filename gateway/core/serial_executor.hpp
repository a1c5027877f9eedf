// The executor for one chain of work that must not run concurrently with itself (a session,
// an upstream connection, the pool's bookkeeping).
#pragma once

#include "gateway/core/net.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/strand.hpp>

namespace imagegate {

/// A new strand on `ex`, or `ex` itself when exactly one thread runs its io_context: one
/// thread already serialises every handler, and a strand would only add a lock, a queue and
/// an allocation to every step. Measured: 14.3k -> 11.3k instructions per cache hit with
/// sessions on the executor itself (tests/bench/PERFORMANCE.md).
inline asio::any_io_executor serial_executor(const asio::any_io_executor& ex,
                                             bool single_threaded) {
    if (single_threaded) {
        return ex;
    }
    return asio::make_strand(ex);
}

}  // namespace imagegate
