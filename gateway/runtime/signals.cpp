#include "gateway/runtime/signals.hpp"

#include <boost/asio/post.hpp>

#include <csignal>

namespace imagegate::gateway {

struct signal_handler::state {
    state(asio::any_io_executor ex, signal_hooks h)
        : signals(std::move(ex), SIGINT, SIGTERM, SIGHUP), hooks(std::move(h)) {}
    asio::signal_set signals;
    signal_hooks hooks;
};

// One wait at a time: re-armed after SIGHUP, not after a stop signal (a second SIGTERM
// during the drain then stays registered and is ignored, rather than killing the process
// half-way through the drain).
void signal_handler::arm(const std::shared_ptr<state>& st) {
    st->signals.async_wait(
        [weak = std::weak_ptr(st)](const boost::system::error_code& ec, int sig) {
            const auto self = weak.lock();
            if (ec || !self) {
                return;  // cancelled: the handler is being destroyed
            }
            if (sig == SIGHUP) {
                if (self->hooks.reload) {
                    self->hooks.reload();
                }
                arm(self);
                return;
            }
            if (self->hooks.stop) {
                self->hooks.stop(sig);
            }
        });
}

signal_handler::signal_handler(asio::any_io_executor ex, signal_hooks hooks)
    : state_(std::make_shared<state>(std::move(ex), std::move(hooks))) {}

signal_handler::~signal_handler() {
    boost::system::error_code ignored;
    state_->signals.cancel(ignored);
}

void signal_handler::start() { arm(state_); }

void signal_handler::cancel() {
    asio::post(state_->signals.get_executor(), [st = state_] {
        boost::system::error_code ignored;
        st->signals.cancel(ignored);
    });
}

}  // namespace imagegate::gateway
