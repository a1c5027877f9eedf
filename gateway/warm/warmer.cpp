#include "gateway/warm/warmer.hpp"

#include "cache/sharded_cache.hpp"
#include "gateway/admission/gate.hpp"
#include "gateway/core/errc.hpp"
#include "gateway/metrics/registry.hpp"
#include "gateway/upstream/client.hpp"
#include "gateway/warm/page.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <mutex>

namespace imagegate::warm {
namespace {

constexpr auto relaxed = std::memory_order_relaxed;
/// The shortest wait after a refusal: a zero "retry in" never makes the job spin.
constexpr clock::duration min_wait = std::chrono::milliseconds(20);
/// Failed calls in a row (connection, timeout, 5xx, an unclean answer) before the job
/// gives up; it waits 1, 2, 4, 8 s between them.
constexpr unsigned max_failures = 5;

}  // namespace

/// One account's job: its progress (guarded by core::mu) and its own wait timer.
struct job {
    job_progress p;
    clock::time_point run_started{};
    std::uint64_t stored_at_run_start = 0;
    bool cancel = false;  // guarded by core::mu
    asio::any_io_executor ex;
    std::shared_ptr<asio::steady_timer> timer;  // touched only on `ex`
    simdjson::ondemand::parser page_parser;     // used only by the job's coroutine
    simdjson::ondemand::parser item_parser;
};

struct warmer::core {
    cache::sharded_cache& cache;
    upstream::client& client;
    std::shared_ptr<admission::gate> gate;
    gateway::image_policy policy;
    std::shared_ptr<spdlog::logger> log;
    std::function<clock::time_point()> now;
    std::function<std::chrono::system_clock::time_point()> wall;

    mutable std::mutex mu;
    std::vector<std::shared_ptr<job>> jobs;  // guarded by mu; oldest first

    std::atomic<std::uint64_t> pages{0};
    std::atomic<std::uint64_t> stored{0};
    std::atomic<std::uint64_t> invalid{0};
    std::atomic<std::uint64_t> refused{0};
    std::atomic<std::int64_t> running{0};

    core(cache::sharded_cache& c, upstream::client& cl, std::shared_ptr<admission::gate> g,
         gateway::image_policy p, std::shared_ptr<spdlog::logger> l)
        : cache(c), client(cl), gate(std::move(g)), policy(p), log(std::move(l)) {}

    void set(job& j, job_state s, std::string error) {
        const std::lock_guard lock(mu);
        j.p.state = s;
        if (!error.empty()) {
            j.p.last_error = std::move(error);
        }
    }

    bool cancelled(const job& j) const {
        const std::lock_guard lock(mu);
        return j.cancel;
    }

    // Stores the page's images; returns how many were stored.
    std::uint64_t store(const job& j, const page& pg, const cache::sharded_cache::generations& gens,
                        clock::time_point received) {
        std::uint64_t n = 0;
        for (const auto& img : pg.images) {
            const cache::key k(j.p.account, img.canonical_id);
            // The draft rule of the read path: a draft is an upload in progress, fresh
            // briefly and never answered stale.
            const auto ttl = img.draft ? std::min(policy.draft_ttl, policy.ttl) : policy.ttl;
            const clock::duration swr =
                img.draft ? clock::duration{} : policy.stale_while_revalidate;
            const clock::duration sie = img.draft ? clock::duration{} : policy.stale_if_error;
            auto e = cache::make_entry(
                {.key = k,
                 .status = 200,
                 .kind = img.draft ? cache::entry_kind::draft : cache::entry_kind::positive,
                 .body = img.body,
                 .stored_at = received,
                 .ttl = ttl,
                 .swr = swr,
                 .sie = sie});
            if (cache.put_if_current(std::move(e), gens.of(k.view()))) {
                ++n;
            }
        }
        return n;
    }

    std::string target_of(const job& j, bool count) const {
        const std::lock_guard lock(mu);
        if (count) {
            return "/accounts/" + j.p.account + "/images/v1/stats";
        }
        std::string t =
            "/accounts/" + j.p.account + "/images/v2?per_page=" + std::to_string(j.p.per_page);
        if (!j.p.position.empty()) {
            t += "&continuation_token=" + j.p.position;  // unreserved characters only
        }
        return t;
    }
};

namespace {

// Waits `d` unless the job is cancelled meanwhile; false when it was.
asio::awaitable<bool> sleep(std::shared_ptr<warmer::core> k, std::shared_ptr<job> j,
                            clock::duration d) {
    // No suspension between this check and the wait: cancel() sets the flag, then posts the
    // timer's cancel to this worker, which runs it only once the wait is armed.
    if (k->cancelled(*j)) {
        co_return false;
    }
    j->timer->expires_after(std::max(d, min_wait));
    co_await j->timer->async_wait(use_nothrow);
    co_return !k->cancelled(*j);
}

// The job: one coroutine on its worker, one upstream call at a time.
asio::awaitable<void> run_job(std::shared_ptr<warmer::core> self, std::shared_ptr<job> j) {
    auto& k = *self;
    unsigned failures = 0;
    bool count_asked = false;
    for (;;) {
        if (k.cancelled(*j)) {
            k.set(*j, job_state::cancelled, {});
            co_return;
        }
        // One upstream call: a background slot or nothing. A refusal says truthfully when a
        // slot exists (the foreground reserve is never taken); the job waits that long.
        admission::call c;
        c.prio = shield::priority::background;
        admission::ticket t = co_await k.gate->reserve(c);
        if (!t.granted()) {
            k.refused.fetch_add(1, relaxed);
            {
                const std::lock_guard lock(k.mu);
                ++j->p.refused;
                j->p.state = job_state::waiting;
            }
            if (!co_await sleep(self, j, t.retry_wait())) {
                continue;
            }
            k.set(*j, job_state::running, {});
            continue;
        }
        if (t.slot() > clock::now() && !co_await t.wait()) {
            continue;  // never abandoned: the ticket gives its slot back when dropped
        }
        const bool count = !count_asked;
        const std::string target = k.target_of(*j, count);
        // Read before the call: a purge from now on wins over this page's answer.
        const auto gens = k.cache.all_generations();
        t.commit();
        {
            const std::lock_guard lock(k.mu);
            ++j->p.calls;
        }
        auto res = co_await k.client.fetch(target, clock::now() + k.policy.request_timeout);
        const auto received = clock::now();
        if (res) {
            const auto paused = k.gate->observe(
                nullptr, {res->status, res->retry_after, res->ratelimit, res->ratelimit_policy});
            if (res->status == 429) {
                // Every call of the token is paused; the job resumes from the same position.
                k.log->warn("warm {}: upstream answered 429: waiting for the pause", j->p.account);
                k.set(*j, job_state::waiting, "upstream 429: paused");
                if (co_await sleep(self, j, paused.value_or(std::chrono::seconds(1)))) {
                    k.set(*j, job_state::running, {});
                }
                continue;
            }
        }
        if (count) {
            // The account's image count, for the ETA only: any failure just leaves it unknown.
            count_asked = true;
            if (res && res->status == 200 && res->facts.clean()) {
                const auto total =
                    parse_image_count(res->body, res->body.capacity(), j->page_parser);
                const std::lock_guard lock(k.mu);
                j->p.total = total;
            }
            continue;
        }
        if (!res && res.error() == errc::upstream_too_large) {
            // The same page would be as large again: no retry.
            k.set(*j, job_state::failed,
                  "a page is larger than upstream.max_body_bytes: lower per_page or raise it");
            co_return;
        }
        if (!res || res->status >= 500 || !res->facts.clean()) {
            const std::string why = !res ? "upstream call failed: " + res.error().message()
                                    : res->status >= 500
                                        ? "upstream answered " + std::to_string(res->status)
                                        : std::string("upstream answer not cleanly framed");
            if (++failures >= max_failures) {
                k.set(*j, job_state::failed, why);
                co_return;
            }
            k.set(*j, job_state::waiting, why);
            if (co_await sleep(self, j, std::chrono::seconds(1 << (failures - 1)))) {
                k.set(*j, job_state::running, {});
            }
            continue;
        }
        if (res->status != 200) {
            k.set(*j, job_state::failed, "upstream answered " + std::to_string(res->status));
            co_return;
        }
        const page pg = parse_page(res->body, res->body.capacity(), j->p.per_page, j->page_parser,
                                   j->item_parser);
        if (!pg.ok()) {
            // The parser's pointers and reasons are its own words, never upstream bytes.
            k.set(*j, job_state::failed,
                  "listing page rejected at " + pg.failure->pointer + ": " + pg.failure->reason);
            k.log->warn("warm {}: listing page rejected: {}", j->p.account, pg.failure->reason);
            co_return;
        }
        failures = 0;
        const std::uint64_t n = k.store(*j, pg, gens, received);
        k.pages.fetch_add(1, relaxed);
        k.stored.fetch_add(n, relaxed);
        k.invalid.fetch_add(pg.invalid, relaxed);
        const std::lock_guard lock(k.mu);
        ++j->p.pages;
        j->p.stored += n;
        j->p.invalid += pg.invalid;
        j->p.position = pg.continuation.value_or(std::string());
        if (!pg.continuation) {
            j->p.state = job_state::done;
            co_return;
        }
    }
}

}  // namespace

warmer::warmer(cache::sharded_cache& cache, upstream::client& client,
               std::shared_ptr<admission::gate> gate, gateway::image_policy policy,
               std::shared_ptr<spdlog::logger> log, std::function<clock::time_point()> now,
               std::function<std::chrono::system_clock::time_point()> wall)
    : core_(std::make_shared<core>(cache, client, std::move(gate), policy, std::move(log))) {
    core_->now = now ? std::move(now) : [] { return clock::now(); };
    core_->wall = wall ? std::move(wall) : [] { return std::chrono::system_clock::now(); };
}

warmer::~warmer() { shutdown(); }

start_result warmer::start(asio::any_io_executor ex, start_request r) {
    auto& k = *core_;
    std::shared_ptr<job> j;
    start_result result = start_result::started;
    {
        const std::lock_guard lock(k.mu);
        auto it = std::find_if(k.jobs.begin(), k.jobs.end(),
                               [&](const auto& x) { return x->p.account == r.account; });
        if (it != k.jobs.end()) {
            const job_state s = (*it)->p.state;
            if (s == job_state::running || s == job_state::waiting) {
                return start_result::running;
            }
            // An unfinished job goes on from where it stopped, with its counters.
            const bool resumable = s != job_state::done && !r.restart;
            j = std::make_shared<job>();
            if (resumable) {
                j->p = (*it)->p;
                result = start_result::resumed;
            }
            k.jobs.erase(it);
        } else {
            j = std::make_shared<job>();
            if (k.jobs.size() >= max_jobs) {
                // Forget the oldest ended job; running ones are never forgotten.
                auto ended = std::find_if(k.jobs.begin(), k.jobs.end(), [](const auto& x) {
                    return x->p.state != job_state::running && x->p.state != job_state::waiting;
                });
                if (ended == k.jobs.end()) {
                    return start_result::full;
                }
                k.jobs.erase(ended);
            }
        }
        j->p.account = r.account;
        j->p.per_page = r.per_page;
        if (r.resume_from) {
            j->p.position = *r.resume_from;
        }
        j->p.state = job_state::running;
        j->p.last_error.clear();
        j->p.started = k.wall();
        j->run_started = k.now();
        j->stored_at_run_start = j->p.stored;
        j->ex = ex;
        j->timer = std::make_shared<asio::steady_timer>(ex);
        k.jobs.push_back(j);
    }
    k.running.fetch_add(1, relaxed);
    k.log->info("warm {}: {} ({} per page{})", r.account,
                result == start_result::resumed ? "resumed" : "started", r.per_page,
                j->p.position.empty() ? "" : ", from a continuation token");
    auto self = core_;
    asio::co_spawn(ex, run_job(self, j), [self, j](const std::exception_ptr& ep) {
        self->running.fetch_sub(1, relaxed);
        if (ep) {
            self->set(*j, job_state::failed, "internal error");
            self->log->error("warm {}: the job threw", j->p.account);
        }
        const std::lock_guard lock(self->mu);
        const auto took = self->now() - j->run_started;
        j->p.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(took);
        j->p.rate = per_second(j->p.stored - j->stored_at_run_start, took);
        self->log->info("warm {}: {} after {} page(s), {} image(s) stored, {} invalid",
                        j->p.account, to_string(j->p.state), j->p.pages, j->p.stored, j->p.invalid);
    });
    return result;
}

bool warmer::cancel(std::string_view account) {
    auto& k = *core_;
    const std::lock_guard lock(k.mu);
    for (const auto& j : k.jobs) {
        if (j->p.account == account &&
            (j->p.state == job_state::running || j->p.state == job_state::waiting)) {
            j->cancel = true;
            // The timer belongs to the job's worker: cancelled there.
            asio::post(j->ex, [t = j->timer] { t->cancel(); });
            return true;
        }
    }
    return false;
}

std::vector<job_progress> warmer::jobs() const {
    auto& k = *core_;
    const auto now = k.now();
    const std::lock_guard lock(k.mu);
    std::vector<job_progress> out;
    out.reserve(k.jobs.size());
    for (const auto& j : k.jobs) {
        job_progress p = j->p;
        const bool live = p.state == job_state::running || p.state == job_state::waiting;
        if (live) {
            p.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(now - j->run_started);
            p.rate = per_second(p.stored - j->stored_at_run_start, now - j->run_started);
        }
        out.push_back(std::move(p));
    }
    return out;
}

void warmer::shutdown() {
    auto& k = *core_;
    std::vector<std::string> accounts;
    {
        const std::lock_guard lock(k.mu);
        for (const auto& j : k.jobs) {
            accounts.push_back(j->p.account);
        }
    }
    for (const auto& a : accounts) {
        cancel(a);
    }
}

void warmer::render_metrics(std::string& out) const {
    using metrics::append_sample;
    const auto& k = *core_;
    append_sample(out, "imagegate_warm_pages_total", "counter", "Listing pages a warm job stored.",
                  k.pages.load(relaxed));
    append_sample(out, "imagegate_warm_images_stored_total", "counter",
                  "Listed images stored as detail entries by warm jobs.", k.stored.load(relaxed));
    append_sample(out, "imagegate_warm_invalid_total", "counter",
                  "Listed images refused by validation (never stored).", k.invalid.load(relaxed));
    append_sample(out, "imagegate_warm_refused_total", "counter",
                  "Warm calls the gate refused (foreground reserve or upstream pause); the job "
                  "waited and resumed.",
                  k.refused.load(relaxed));
    append_sample(out, "imagegate_warm_jobs_running", "gauge",
                  "Warm jobs running or waiting for the budget.", k.running.load(relaxed));
}

}  // namespace imagegate::warm
