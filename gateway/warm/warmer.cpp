#include "gateway/warm/warmer.hpp"

#include "cache/sharded_cache.hpp"
#include "gateway/admission/gate.hpp"
#include "gateway/core/errc.hpp"
#include "gateway/fleet/l2_cache.hpp"
#include "gateway/metrics/registry.hpp"
#include "gateway/upstream/client.hpp"
#include "gateway/warm/page.hpp"
#include "gateway/warm/state_file.hpp"
#include "gateway/warm/state_store.hpp"

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
/// last_error of a job the gateway stopped (or a restart found running).
constexpr std::string_view interrupted_error = "the gateway stopped while the job ran";

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
    std::shared_ptr<fleet::l2_cache> l2;  // null without the fleet tier
    std::unique_ptr<state_store> saved;   // null without a state file

    mutable std::mutex mu;
    std::vector<std::shared_ptr<job>> jobs;  // guarded by mu; oldest first
    std::uint64_t snapshot_seq = 0;          // guarded by mu: the state file's snapshots
    bool stopping = false;                   // guarded by mu: shutdown() ran

    std::atomic<std::uint64_t> pages{0};
    std::atomic<std::uint64_t> stored{0};
    std::atomic<std::uint64_t> invalid{0};
    std::atomic<std::uint64_t> refused{0};
    std::atomic<std::int64_t> running{0};
    std::atomic<std::uint64_t> l2_written{0};
    std::atomic<std::uint64_t> l2_failed{0};

    core(cache::sharded_cache& c, upstream::client& cl, std::shared_ptr<admission::gate> g,
         gateway::image_policy p, std::shared_ptr<spdlog::logger> l)
        : cache(c), client(cl), gate(std::move(g)), policy(p), log(std::move(l)) {}

    // The state file's text of every job now, numbered (the writer skips older snapshots).
    std::pair<std::uint64_t, std::string> snapshot() {
        const std::lock_guard lock(mu);
        std::vector<job_progress> all;
        all.reserve(jobs.size());
        for (const auto& j : jobs) {
            all.push_back(j->p);
        }
        return {++snapshot_seq, format_state(all)};
    }

    // A job's end, cancelled by DELETE or ended by the gateway stopping.
    void stopped(job& j) {
        const std::lock_guard lock(mu);
        j.p.state = stopping ? job_state::interrupted : job_state::cancelled;
        if (stopping) {
            j.p.last_error = std::string(interrupted_error);
        }
    }

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

    // Stores the page's images in L1; returns those stored, each with the generation it was
    // stored under (what L2 gets: an entry the purge fence refused goes nowhere).
    std::vector<fleet::l2_cache::batch_entry> store(const job& j, const page& pg,
                                                    const cache::sharded_cache::generations& gens,
                                                    clock::time_point received) {
        std::vector<fleet::l2_cache::batch_entry> out;
        out.reserve(pg.images.size());
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
            const std::uint64_t generation = gens.of(k.view());
            if (cache.put_if_current(e, generation)) {
                out.push_back({std::move(e), generation});
            }
        }
        return out;
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

// Writes every job's state to the state file (when there is one) and waits until it is done.
asio::awaitable<void> persist(std::shared_ptr<warmer::core> k) {
    if (!k->saved) {
        co_return;
    }
    auto [seq, text] = k->snapshot();
    co_await k->saved->save(seq, std::move(text));
}

// The job: one coroutine on its worker, one upstream call at a time.
asio::awaitable<void> run_job(std::shared_ptr<warmer::core> self, std::shared_ptr<job> j) {
    auto& k = *self;
    unsigned failures = 0;
    bool count_asked = false;
    for (;;) {
        if (k.cancelled(*j)) {
            k.stopped(*j);
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
        auto entries = k.store(*j, pg, gens, received);
        const std::uint64_t n = entries.size();
        // The same entries to the fleet's L2 before the position moves on: a restart resumes
        // at this page until both tiers hold it. Redis down or slow costs the job at most the
        // deadline (the breaker makes a dead Redis cost nothing); L1 is stored either way.
        fleet::l2_cache::batch_outcome l2;
        if (k.l2 && !entries.empty()) {
            l2 = co_await k.l2->write_batch(std::move(entries),
                                            clock::now() + k.policy.request_timeout);
            k.l2_written.fetch_add(l2.written, relaxed);
            k.l2_failed.fetch_add(l2.failed, relaxed);
        }
        k.pages.fetch_add(1, relaxed);
        k.stored.fetch_add(n, relaxed);
        k.invalid.fetch_add(pg.invalid, relaxed);
        {
            const std::lock_guard lock(k.mu);
            ++j->p.pages;
            j->p.stored += n;
            j->p.invalid += pg.invalid;
            j->p.l2_written += l2.written;
            j->p.l2_failed += l2.failed;
            j->p.position = pg.continuation.value_or(std::string());
            if (!pg.continuation) {
                j->p.state = job_state::done;
                co_return;  // the completion handler writes the state file
            }
        }
        // The position is on disk before the next page is asked for: a restart fetches again
        // at most the page in flight.
        co_await persist(self);
    }
}

}  // namespace

warmer::warmer(cache::sharded_cache& cache, upstream::client& client,
               std::shared_ptr<admission::gate> gate, gateway::image_policy policy,
               std::shared_ptr<spdlog::logger> log, warmer_options opts,
               std::function<clock::time_point()> now,
               std::function<std::chrono::system_clock::time_point()> wall)
    : core_(std::make_shared<core>(cache, client, std::move(gate), policy, std::move(log))) {
    auto& k = *core_;
    k.now = now ? std::move(now) : [] { return clock::now(); };
    k.wall = wall ? std::move(wall) : [] { return std::chrono::system_clock::now(); };
    k.l2 = std::move(opts.l2);
    if (opts.state_file.empty()) {
        return;
    }
    k.saved = std::make_unique<state_store>(std::move(opts.state_file), k.log);
    // Nothing resumes by itself: a restart (a crash loop, a rollout of the whole fleet) must
    // not spend the token's budget until someone asks, and the jobs wait for a POST.
    for (auto& p : k.saved->load()) {
        auto j = std::make_shared<job>();
        j->p = std::move(p);
        if (is_live(j->p.state)) {
            j->p.state = job_state::interrupted;  // it ran when the gateway stopped or died
        }
        if (j->p.state == job_state::interrupted) {
            j->p.last_error = std::string(interrupted_error);
        } else if (j->p.state == job_state::failed) {
            j->p.last_error = "failed before the gateway restarted (its log says why)";
        }
        k.jobs.push_back(std::move(j));
    }
}

warmer::~warmer() {
    shutdown();
    // The workers have stopped (the composition root's order): let the writes already queued
    // finish now, not after the io_contexts their completions go to are gone.
    if (core_->saved) {
        core_->saved->drain();
    }
}

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
            if (is_live(s)) {
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
                auto ended = std::find_if(k.jobs.begin(), k.jobs.end(),
                                          [](const auto& x) { return !is_live(x->p.state); });
                if (ended == k.jobs.end()) {
                    return start_result::full;
                }
                k.jobs.erase(ended);
            }
        }
        j->p.account = r.account;
        // A resumed job keeps its page size unless the request names one.
        if (r.per_page || result != start_result::resumed) {
            j->p.per_page = r.per_page.value_or(default_per_page);
        }
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
                result == start_result::resumed ? "resumed" : "started", j->p.per_page,
                j->p.position.empty() ? "" : ", from a continuation token");
    auto self = core_;
    asio::co_spawn(ex, run_job(self, j), [self, j](const std::exception_ptr& ep) {
        self->running.fetch_sub(1, relaxed);
        if (ep) {
            self->set(*j, job_state::failed, "internal error");
            self->log->error("warm {}: the job threw", j->p.account);
        }
        {
            const std::lock_guard lock(self->mu);
            const auto took = self->now() - j->run_started;
            j->p.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(took);
            j->p.rate = per_second(j->p.stored - j->stored_at_run_start, took);
            self->log->info("warm {}: {} after {} page(s), {} image(s) stored, {} invalid",
                            j->p.account, to_string(j->p.state), j->p.pages, j->p.stored,
                            j->p.invalid);
        }
        // Done, failed, cancelled or interrupted: on disk as such (the writer thread finishes
        // it even while the gateway stops).
        if (self->saved) {
            auto [seq, text] = self->snapshot();
            self->saved->save_detached(seq, std::move(text));
        }
    });
    return result;
}

bool warmer::cancel(std::string_view account) {
    auto& k = *core_;
    const std::lock_guard lock(k.mu);
    for (const auto& j : k.jobs) {
        if (j->p.account == account && is_live(j->p.state)) {
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
        if (is_live(p.state)) {
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
        k.stopping = true;  // the jobs end as interrupted, not cancelled
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
    append_sample(out, "imagegate_warm_l2_written_total", "counter",
                  "Entries warm jobs stored in L1 and wrote to the fleet's L2.",
                  k.l2_written.load(relaxed));
    append_sample(out, "imagegate_warm_l2_failed_total", "counter",
                  "Entries warm jobs stored in L1 but could not write to L2 (Redis down, slow, "
                  "breaker open, error reply).",
                  k.l2_failed.load(relaxed));
    append_sample(out, "imagegate_warm_state_writes_total", "counter",
                  "Writes of the warm state file ([warm] state_file).",
                  k.saved ? k.saved->writes() : 0);
    append_sample(out, "imagegate_warm_state_write_errors_total", "counter",
                  "Writes of the warm state file that failed (the jobs went on).",
                  k.saved ? k.saved->write_errors() : 0);
}

}  // namespace imagegate::warm
