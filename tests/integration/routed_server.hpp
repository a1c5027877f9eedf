// A plain-HTTP listener on a free loopback port that serves a test's routing table on two
// workers: the fixture of the session-layer tests (bodies, streaming).
#pragma once

#include "gateway/core/workers.hpp"
#include "gateway/http/server.hpp"
#include "tests/support/http_client.hpp"

#include <boost/test/unit_test.hpp>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <memory>

namespace imagegate::testing {

/// Starts in the constructor, stops (connections closed, workers joined) in the destructor.
/// Header and idle timeouts are 1 s and 2 s; `body_timeout` is the listener's.
struct routed_server {
    imagegate::workers io{2};
    std::unique_ptr<gateway::http_server> server;

    routed_server(std::shared_ptr<const gateway::router> routes,
                  std::chrono::milliseconds body_timeout) {
        using namespace std::chrono_literals;
        gateway::server_options o;
        o.port = 0;
        o.header_timeout = 1s;
        o.idle_timeout = 2s;
        o.body_timeout = body_timeout;
        server = std::make_unique<gateway::http_server>(
            io.executors(), o, std::move(routes), nullptr,
            std::make_shared<spdlog::logger>("test",
                                             std::make_shared<spdlog::sinks::null_sink_mt>()));
        server->start();
        io.start();
    }
    ~routed_server() {
        using namespace std::chrono_literals;
        server->close_all();
        io.release();
        BOOST_CHECK(io.wait_until(std::chrono::steady_clock::now() + 10s));
        io.stop();
        io.join();
    }
    routed_server(const routed_server&) = delete;
    routed_server& operator=(const routed_server&) = delete;

    endpoint ep(std::chrono::milliseconds timeout = std::chrono::seconds(3)) const {
        endpoint e;
        e.port = server->port();
        e.tls = false;
        e.timeout = timeout;
        return e;
    }
};

}  // namespace imagegate::testing
