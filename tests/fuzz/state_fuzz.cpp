// Fuzzes warm::parse_state (gateway/warm/state_file.cpp), the reader of the warm state file,
// with arbitrary file contents and checks what start-up relies on: every job it accepts has
// an account id and a position POST /cache/warm would accept, a page size in range, a state
// the warmer knows, no done job with a position, one job per account, at most max_jobs; every
// refusal names a line of the file (or 0, the whole file) with a printable reason of our own;
// and format_state of the accepted jobs reads back to the same jobs with nothing refused.
#include "fuzz_check.hpp"
#include "gateway/image/route.hpp"
#include "gateway/warm/page.hpp"
#include "gateway/warm/state_file.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string_view>

namespace {

using namespace imagegate;

bool same(const warm::job_progress& a, const warm::job_progress& b) {
    return a.account == b.account && a.state == b.state && a.per_page == b.per_page &&
           a.position == b.position && a.pages == b.pages && a.stored == b.stored &&
           a.invalid == b.invalid && a.refused == b.refused && a.calls == b.calls &&
           a.total == b.total && a.l2_written == b.l2_written && a.l2_failed == b.l2_failed;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    // Past max_state_bytes the parser refuses before reading; a little past is enough.
    if (size > warm::max_state_bytes + 16) {
        return 0;
    }
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const warm::parsed_state st = warm::parse_state(text);

    FUZZ_CHECK(st.jobs.size() <= warm::max_jobs);
    const std::size_t lines = static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
    std::set<std::string> accounts;
    for (const auto& j : st.jobs) {
        FUZZ_CHECK(gateway::is_account_id(j.account));
        FUZZ_CHECK(j.position.empty() || warm::is_continuation_token(j.position));
        FUZZ_CHECK(j.per_page >= warm::min_per_page && j.per_page <= warm::max_per_page);
        FUZZ_CHECK(warm::parse_job_state(warm::to_string(j.state)) == j.state);
        FUZZ_CHECK(!(j.state == warm::job_state::done && !j.position.empty()));
        FUZZ_CHECK(!j.total || *j.total <= warm::max_state_total);
        FUZZ_CHECK(accounts.insert(j.account).second);
    }
    for (const auto& r : st.refusals) {
        FUZZ_CHECK(r.line <= lines + 1);  // + 1: a last line without its newline
        FUZZ_CHECK(!r.reason.empty());
        FUZZ_CHECK(std::all_of(r.reason.begin(), r.reason.end(),
                               [](char c) { return c >= ' ' && c < 0x7f; }));
    }
    // A file refused whole gives no job; accepted jobs come with at most one refusal per line.
    if (std::any_of(st.refusals.begin(), st.refusals.end(),
                    [](const warm::state_refusal& r) { return r.line == 0; })) {
        FUZZ_CHECK(st.jobs.empty() && st.refusals.size() == 1);
    }
    FUZZ_CHECK(st.jobs.size() + st.refusals.size() <= lines + 1);

    const warm::parsed_state again = warm::parse_state(warm::format_state(st.jobs));
    FUZZ_CHECK(again.refusals.empty());
    FUZZ_CHECK(again.jobs.size() == st.jobs.size());
    for (std::size_t i = 0; i < st.jobs.size(); ++i) {
        FUZZ_CHECK(same(st.jobs[i], again.jobs[i]));
    }
    return 0;
}
