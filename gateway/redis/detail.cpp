#include "gateway/redis/detail.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <spdlog/logger.h>

#include <cstdio>
#include <cstdlib>
#include <utility>

namespace imagegate::redis::detail {
namespace {

// io_context executors differ in type by their property bits (blocking.never = 1,
// relationship.continuation = 2, outstanding_work.tracked = 4).
template <unsigned Bits>
using ioc_executor = asio::io_context::basic_executor_type<std::allocator<void>, Bits>;

template <std::size_t... Bits>
bool check_ioc(const asio::any_io_executor& ex, bool& known, std::index_sequence<Bits...>) {
    bool running = false;
    const auto one = [&](const auto* e) {
        if (e != nullptr) {
            known = true;
            running = e->running_in_this_thread();
        }
    };
    (one(ex.target<ioc_executor<Bits>>()), ...);
    (one(ex.target<asio::strand<ioc_executor<Bits>>>()), ...);
    return running;
}

}  // namespace

bool running_in(const asio::any_io_executor& ex) noexcept {
    bool known = false;
    const bool running = check_ioc(ex, known, std::make_index_sequence<8>{});
    if (known) {
        return running;
    }
    if (const auto* s = ex.target<asio::strand<asio::any_io_executor>>(); s != nullptr) {
        return s->running_in_this_thread();
    }
    return true;
}

void require_executor(const asio::any_io_executor& ex, const char* what) noexcept {
    if (!running_in(ex)) {
        std::fprintf(stderr, "imagegate redis: %s called outside its executor's thread\n", what);
        std::abort();
    }
}

bool log_task_exception(spdlog::logger& log, std::string_view what, const std::exception_ptr& ep) {
    if (!ep) {
        return false;
    }
    try {
        std::rethrow_exception(ep);
    } catch (const std::exception& e) {
        log.error("redis {} ended by exception: {}", what, e.what());
    } catch (...) {
        log.error("redis {} ended by an unknown exception", what);
    }
    return true;
}

}  // namespace imagegate::redis::detail
