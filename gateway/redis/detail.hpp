// The invariants of the Redis client's background tasks: code written for a serial executor
// runs on it (the connection and client keep unsynchronised state), and a task's exception
// is logged, never lost or thrown into the io_context.
#pragma once

#include "gateway/core/net.hpp"

#include <boost/asio/any_io_executor.hpp>

#include <exception>
#include <string_view>

namespace spdlog {
class logger;
}

namespace imagegate::redis::detail {

/// True when the calling thread is running `ex` (an io_context executor or a strand of one),
/// and for executor types it cannot inspect.
bool running_in(const asio::any_io_executor& ex) noexcept;

/// Aborts with `what` on stderr when not running_in(ex), in every build mode: a call from
/// another thread would race on state no mutex guards, which is worse than stopping.
void require_executor(const asio::any_io_executor& ex, const char* what) noexcept;

/// For a co_spawn completion: logs the exception `ep` carries, if any, as "<what> ended by
/// exception: <what()>". Returns true when there was one.
bool log_task_exception(spdlog::logger& log, std::string_view what, const std::exception_ptr& ep);

}  // namespace imagegate::redis::detail
