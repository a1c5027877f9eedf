// The listener's background tasks (internal to gateway/http): the accept loop, which spreads
// connections over the workers and refuses those over the limits, and the idle reaper, which
// closes plain connections that wait too long for their next request.
#pragma once

#include "gateway/core/net.hpp"
#include "gateway/http/server_state.hpp"

#include <exception>
#include <memory>

namespace imagegate::gateway::detail {

/// Accepts until stop(); runs on the acceptor's executor.
asio::awaitable<void> accept_loop(std::shared_ptr<server_state> st);

/// Closes plain sessions past their idle or first-head deadline; runs until stop().
asio::awaitable<void> idle_reaper(std::shared_ptr<server_state> st);

/// Completion of the accept loop and of the idle reaper: both end only on stop() unless a
/// bug throws.
struct listener_task_done {
    std::shared_ptr<server_state> st;
    const char* task;
    void operator()(const std::exception_ptr& ep) const;
};

}  // namespace imagegate::gateway::detail
