// Checks that code written for a serial executor (one io_context run by one thread, or a
// strand) runs on it: the connection and client keep unsynchronised state.
#pragma once

#include "gateway/net.hpp"

#include <boost/asio/any_io_executor.hpp>

namespace imagegate::redis::detail {

/// True when the calling thread is running `ex` (an io_context executor or a strand of one),
/// and for executor types it cannot inspect.
bool running_in(const asio::any_io_executor& ex) noexcept;

/// Aborts with `what` on stderr when not running_in(ex), in every build mode: a call from
/// another thread would race on state no mutex guards, which is worse than stopping.
void require_executor(const asio::any_io_executor& ex, const char* what) noexcept;

}  // namespace imagegate::redis::detail
