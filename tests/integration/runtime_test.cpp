// The threading model and the process runtime: workers (one io_context and one thread
// each), IMAGEGATE_CHECK, the signal handler, app::shutdown() from any thread (an I/O worker
// included) and misses running on the worker of their session.
#define BOOST_TEST_MODULE runtime_test
#include "gateway/core/check.hpp"
#include "gateway/core/workers.hpp"
#include "gateway/runtime/signals.hpp"
#include "tests/integration/gateway_fixture.hpp"
#include "tests/support/death.hpp"

#include <boost/asio/post.hpp>
#include <spdlog/sinks/base_sink.h>

#include <csignal>
#include <future>
#include <mutex>
#include <set>
#include <vector>

namespace ts = imagegate::testing;
namespace asio = boost::asio;
namespace http = boost::beast::http;
using ts::contains;
using namespace std::chrono_literals;

namespace {

// Keeps every formatted log message; readable while the app logs from its threads.
class capture_sink : public spdlog::sinks::base_sink<std::mutex> {
public:
    std::size_t count(std::string_view needle) {
        const std::lock_guard lock(mutex_);
        std::size_t n = 0;
        for (const auto& l : lines_) {
            n += contains(l, needle) ? 1 : 0;
        }
        return n;
    }

protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
        lines_.emplace_back(msg.payload.data(), msg.payload.size());
    }
    void flush_() override {}

private:
    std::vector<std::string> lines_;  // guarded by mutex_
};

struct captured_log {
    std::shared_ptr<capture_sink> sink = std::make_shared<capture_sink>();
    std::shared_ptr<spdlog::logger> logger = std::make_shared<spdlog::logger>("captured", sink);
};

}  // namespace

// Death tests first, while the process has no other thread (a forked child keeps only the
// calling one).
BOOST_AUTO_TEST_CASE(check_aborts_with_its_reason_in_every_build_mode) {
    const auto end = ts::run_in_child([] {
        const int two = 2;
        IMAGEGATE_CHECK(two == 3, "two is three");
    });
    BOOST_TEST(end.aborted);
    BOOST_TEST(contains(end.stderr_text, "internal check failed: two is three (two == 3)"),
               end.stderr_text);
    // A check that holds costs nothing visible.
    const auto fine = ts::run_in_child([] { IMAGEGATE_CHECK(1 + 1 == 2, "arithmetic"); });
    BOOST_TEST(!fine.aborted);
    BOOST_TEST(fine.exit_code == 0);
}

// A worker that waits for the workers would wait for itself.
BOOST_AUTO_TEST_CASE(a_worker_cannot_join_its_workers) {
    const auto end = ts::run_in_child([] {
        imagegate::workers io(1);
        io.start();
        asio::post(io.executor(0), [&io] { io.join(); });
        io.wait_until(std::chrono::steady_clock::now() + 10s);
    });
    BOOST_TEST(end.aborted);
    BOOST_TEST(contains(end.stderr_text, "a worker joined the workers"), end.stderr_text);
}

// Each context is run by exactly one thread of its own, which knows its index; an executor
// "runs on this worker" only on the thread that runs its context.
BOOST_AUTO_TEST_CASE(each_worker_is_one_thread_running_one_context) {
    imagegate::workers io(3);
    struct seen {
        std::size_t index;
        std::thread::id thread;
        std::vector<bool> runs;  // runs_on_this_worker(executor(j)) for each j
        bool mine;               // io.runs_current_thread()
    };
    std::mutex mu;
    std::vector<seen> all;
    std::promise<void> done;
    io.start();
    io.post_to_all([&] {
        // Recorded here, checked on the test's thread: Boost.Test is not thread-safe.
        seen s{imagegate::workers::current_index(),
               std::this_thread::get_id(),
               {},
               io.runs_current_thread()};
        for (std::size_t j = 0; j < io.size(); ++j) {
            s.runs.push_back(imagegate::runs_on_this_worker(io.executor(j)));
        }
        const std::lock_guard lock(mu);
        all.push_back(std::move(s));
        if (all.size() == io.size()) {
            done.set_value();
        }
    });
    BOOST_REQUIRE(done.get_future().wait_for(10s) == std::future_status::ready);
    io.release();
    BOOST_TEST(io.wait_until(std::chrono::steady_clock::now() + 10s));
    io.join();
    BOOST_TEST(all.size() == 3u);
    std::set<std::size_t> indexes;
    std::set<std::thread::id> threads;
    for (const auto& s : all) {
        indexes.insert(s.index);
        threads.insert(s.thread);
        BOOST_TEST(s.mine);
        for (std::size_t j = 0; j < s.runs.size(); ++j) {
            BOOST_TEST(s.runs[j] == (j == s.index), "worker " << s.index << " executor " << j);
        }
    }
    BOOST_TEST(indexes == (std::set<std::size_t>{0, 1, 2}));
    BOOST_TEST(threads.size() == 3u);
    BOOST_TEST(!threads.contains(std::this_thread::get_id()));
    // Not a worker here.
    BOOST_TEST(!imagegate::on_worker_thread());
    BOOST_TEST(imagegate::workers::current_index() == imagegate::workers::npos);
    BOOST_TEST(!imagegate::runs_on_this_worker(io.executor(0)));
}

// SIGHUP reaches the reload hook (every time: the wait is re-armed), SIGTERM the stop hook;
// neither takes its default action (which would end this test process).
BOOST_AUTO_TEST_CASE(signals_reach_their_hooks_instead_of_killing_the_process) {
    imagegate::workers io(1);
    std::atomic<int> reloads{0};
    std::promise<void> reloaded_twice;
    std::promise<int> stopped;
    {
        imagegate::gateway::signal_handler signals(
            io.executor(0), {.stop = [&stopped](int sig) { stopped.set_value(sig); },
                             .reload =
                                 [&] {
                                     if (++reloads == 2) {
                                         reloaded_twice.set_value();
                                     }
                                 }});
        signals.start();
        io.start();
        std::raise(SIGHUP);
        std::raise(SIGHUP);
        // Two SIGHUPs may arrive as one pending signal; send until the hook ran twice.
        auto twice = reloaded_twice.get_future();
        for (int i = 0; i < 50 && twice.wait_for(100ms) != std::future_status::ready; ++i) {
            std::raise(SIGHUP);
        }
        BOOST_TEST((twice.wait_for(0s) == std::future_status::ready));
        std::raise(SIGTERM);
        auto stop = stopped.get_future();
        BOOST_REQUIRE(stop.wait_for(10s) == std::future_status::ready);
        BOOST_TEST(stop.get() == SIGTERM);
        io.stop();
        io.join();
    }  // the handler goes after its worker stopped
}

namespace {

// An app in front of the emulator that logs into `log`.
struct app_fixture : ts::emulated_upstream {
    captured_log log;
    std::optional<imagegate::gateway::app> app;

    void make() { app.emplace(settings, log.logger); }
    ts::endpoint data() const {
        ts::endpoint e;
        e.port = app->data_port();
        e.tls = false;
        return e;
    }
    ts::endpoint admin() const {
        ts::endpoint e = data();
        e.port = app->admin_port();
        return e;
    }
    /// /readyz answers 200 within 10 s.
    bool becomes_ready() const {
        return ts::eventually(
            [&] {
                try {
                    return ts::request(admin(), http::verb::get, "/readyz").status == 200u;
                } catch (const std::exception&) {
                    return false;
                }
            },
            10s);
    }
};

}  // namespace

// Called on an I/O worker, shutdown() starts the drain and returns at once (waiting there
// would wait for itself); wait() on another thread completes it, and a request in flight
// is still answered.
BOOST_FIXTURE_TEST_CASE(shutdown_from_an_io_thread_returns_and_wait_completes_it, app_fixture) {
    make();
    app->start();
    delay("in-flight", 300ms);
    ts::response answer;
    std::thread client([&] {
        answer = ts::request(data(), http::verb::get, ts::gateway_runner::image_path("in-flight"));
    });
    BOOST_REQUIRE(ts::eventually([&] { return emu->requests_for("in-flight") == 1u; }));
    std::promise<void> returned;
    asio::post(app->executor(1), [&] {
        app->shutdown();
        returned.set_value();
    });
    BOOST_TEST((returned.get_future().wait_for(2s) == std::future_status::ready));
    // Draining: the listener no longer accepts, readiness is gone.
    const auto started = std::chrono::steady_clock::now();
    app->wait();
    client.join();
    BOOST_TEST(answer.status == 200u);
    BOOST_TEST(!answer.keep_alive);
    // It ended when the last session did, not at the drain timeout (2 s).
    BOOST_TEST((std::chrono::steady_clock::now() - started) < 1500ms);
    BOOST_TEST(log.sink->count("shutdown complete") == 1u);
    BOOST_TEST(log.sink->count("I/O did not finish") == 0u);
    BOOST_CHECK_THROW(ts::request(data(), http::verb::get, "/x"), std::exception);
}

// Two threads that are not workers ask at once: both return once the shutdown is complete,
// which ran once.
BOOST_FIXTURE_TEST_CASE(concurrent_shutdowns_complete_once, app_fixture) {
    make();
    app->start();
    BOOST_TEST(ts::request(data(), http::verb::get, ts::gateway_runner::image_path("one")).status ==
               200u);
    std::thread a([&] { app->shutdown(); });
    std::thread b([&] { app->shutdown(); });
    a.join();
    b.join();
    BOOST_TEST(log.sink->count("shutdown complete") == 1u);
    app->shutdown();  // idempotent
    app.reset();
    BOOST_TEST(log.sink->count("shutdown complete") == 1u);
}

// The process's own loop: SIGHUP reloads (this app has no configuration source, so the reload
// fails, says so and changes nothing), SIGTERM drains and returns exit code 0.
BOOST_FIXTURE_TEST_CASE(run_until_signal_survives_sighup_and_stops_on_sigterm, app_fixture) {
    make();
    auto ran = std::async(std::launch::async, [this] { return app->run_until_signal(); });
    // Ready once started, and run_until_signal() registers the signals before it starts.
    if (becomes_ready()) {
        std::raise(SIGHUP);
        BOOST_TEST(
            ts::eventually([&] { return log.sink->count("no configuration source") == 1u; }));
        BOOST_TEST(ts::request(admin(), http::verb::get, "/readyz").status == 200u);
        BOOST_TEST(ts::request(data(), http::verb::get, ts::gateway_runner::image_path("after-hup"))
                       .status == 200u);
        std::raise(SIGTERM);
    } else {
        BOOST_ERROR("the app never became ready");
        app->shutdown();
    }
    BOOST_REQUIRE(ran.wait_for(10s) == std::future_status::ready);
    BOOST_TEST(ran.get() == 0);
    BOOST_TEST(log.sink->count("signal 15 received") == 1u);
    BOOST_TEST(log.sink->count("shutdown complete") == 1u);
    BOOST_TEST(log.sink->count("I/O did not finish") == 0u);
}

// Without a signal: shutdown() from an I/O worker ends run_until_signal() too, promptly (its
// pending signal wait does not hold worker 0 until the 2 s bound).
BOOST_FIXTURE_TEST_CASE(run_until_signal_ends_on_shutdown_from_a_worker, app_fixture) {
    make();
    auto ran = std::async(std::launch::async, [this] { return app->run_until_signal(); });
    const bool ready = becomes_ready();
    if (!ready) {
        app->shutdown();  // or `ran` would wait for ever
    }
    BOOST_REQUIRE(ready);
    const auto started = std::chrono::steady_clock::now();
    asio::post(app->executor(0), [this] { app->shutdown(); });
    BOOST_REQUIRE(ran.wait_for(10s) == std::future_status::ready);
    BOOST_TEST(ran.get() == 0);
    BOOST_TEST((std::chrono::steady_clock::now() - started) < 1500ms);
    BOOST_TEST(log.sink->count("shutdown complete") == 1u);
    BOOST_TEST(log.sink->count("I/O did not finish") == 0u);
}

// A miss runs on the worker of the session that asked: connections go to the workers in
// turn, and each worker's upstream pool counts the exchanges it ran.
BOOST_FIXTURE_TEST_CASE(misses_run_on_the_worker_of_their_session, app_fixture) {
    settings.server.threads = 2;
    make();
    app->start();
    {
        ts::connection on_0(data());  // the first connection goes to worker 0
        for (int i = 0; i < 3; ++i) {
            BOOST_TEST(on_0.request(http::verb::get,
                                    ts::gateway_runner::image_path("w0-" + std::to_string(i)))
                           .status == 200u);
        }
        ts::connection on_1(data());  // the second to worker 1
        for (int i = 0; i < 2; ++i) {
            BOOST_TEST(on_1.request(http::verb::get,
                                    ts::gateway_runner::image_path("w1-" + std::to_string(i)))
                           .status == 200u);
        }
    }
    const auto metrics = ts::request(admin(), http::verb::get, "/metrics").body;
    BOOST_TEST(contains(metrics, "imagegate_upstream_exchanges_total{worker=\"0\"} 3\n"), metrics);
    BOOST_TEST(contains(metrics, "imagegate_upstream_exchanges_total{worker=\"1\"} 2\n"), metrics);
}
