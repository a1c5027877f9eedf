// Opening connections for an upstream pool: as many as its waiters need within the
// origin's shared limit, reporting a shortfall to the limit, and what a finished connect
// does (hand the connection to a waiter, park it, or fail a waiter with the cause).
#include "gateway/upstream/pool_impl.hpp"

#include <boost/asio/co_spawn.hpp>
#include <spdlog/logger.h>

#include <algorithm>

namespace imagegate::upstream {

namespace detail {

void pool_impl::open_as_needed() {
    if (shutting_down_) {
        report_short(0);
        return;
    }
    const auto n =
        connections_to_open({limit_->max()}, slots_.size(), pending_connects_, waiters_.size());
    const auto got = n == 0 ? 0 : limit_->try_take(n);
    for (std::size_t i = 0; i < got; ++i) {
        auto& s = slots_.emplace_back();
        s.id = next_id_++;
        s.state = slot_state::connecting;
        s.conn = std::make_shared<connection>(ex_, conn_opts_);
        ++pending_connects_;
        start_connect(s);
    }
    // The origin's limit is reached: the other pools hand idle connections over (see
    // connection_limit).
    report_short(n - got);
}

void pool_impl::report_short(std::size_t n) {
    if (n != reported_short_ || force_report_) {
        reported_short_ = n;
        force_report_ = false;
        limit_->set_short(member_, n);
    }
}

void pool_impl::start_connect(slot& s) {
    // The connect task is owned by the slot (which stays counted until the task reports) and
    // runs on this worker; its completion handler runs here too. An exception, if any, is
    // logged and counted as a failed connect.
    auto conn = s.conn;
    const auto deadline = clock::now() + opts_.connect_timeout;
    asio::co_spawn(ex_, conn->connect(deadline),
                   [self = shared_from_this(), id = s.id, conn](
                       std::exception_ptr ep, boost::system::result<void, failure> r) {
                       self->on_connected(id, ep, std::move(r));
                   });
}

void pool_impl::on_connected(std::uint64_t id, std::exception_ptr ep,
                             boost::system::result<void, failure> r) {
    check_here();
    --pending_connects_;
    slot* s = find(id);
    BOOST_ASSERT(s != nullptr);
    if (s == nullptr) {
        return;
    }
    if (ep) {
        try {
            std::rethrow_exception(ep);
        } catch (const std::exception& e) {
            if (log_) {
                log_->error("upstream connect task threw: {}", e.what());
            }
        } catch (...) {
            if (log_) {
                log_->error("upstream connect task threw a non-standard exception");
            }
        }
        r = failure{make_error_code(errc::internal_error), phase::connect, false};
    }
    const bool ok = r.has_value();
    const auto t =
        transition(s->state, ok ? slot_event::connect_succeeded : slot_event::connect_failed,
                   facts_for(*s), {opts_.max_requests_per_connection});
    BOOST_ASSERT(t.action != slot_action::invalid);
    if (ok) {
        stats_->connects.fetch_add(1, std::memory_order_relaxed);
        if (s->conn->resumed()) {
            stats_->tls_resumptions.fetch_add(1, std::memory_order_relaxed);
        }
    }
    switch (t.action) {
    case slot_action::hand_to_waiter:
        s->state = t.next;
        hand_to_first_waiter(*s, false);
        break;
    case slot_action::park: park_or_hand_over(*s); break;
    case slot_action::close: {
        close_and_erase(id);
        if (!ok && !shutting_down_) {
            const auto& f = r.error();
            const errc e = classify(f);
            stats_->count_error(e);
            // Logged here, once: this is the only layer that sees the phase and the lower
            // layer's code of a connect failure. The client logs only the errc it returns.
            if (log_) {
                log_->warn(
                    "upstream connect failed: host={} port={} phase={} category={} "
                    "value={} message={}",
                    conn_opts_->host, conn_opts_->port, to_string(f.phase), f.ec.category().name(),
                    f.ec.value(), f.ec.message());
            }
            // One connect was opened per waiter; its failure answers exactly one of them, so
            // a dead upstream cannot loop connects faster than requests arrive.
            fail_first_waiter(make_error_code(e));
        }
        break;
    }
    default: break;
    }
    update_gauges();
    open_as_needed();
}

// Units came back to the origin's limit while this pool was short: take them now.
void pool_impl::on_room() {
    check_here();
    // Other pools' claims lowered the shortfall the limit holds for us; say it again.
    force_report_ = true;
    open_as_needed();
}

}  // namespace detail

}  // namespace imagegate::upstream
