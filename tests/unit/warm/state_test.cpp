// The warm state file: the strict parser (table-driven: what a file holds, what is refused and
// why), the formatter's round trip, and the atomic write on a real directory.
#include "gateway/warm/page.hpp"
#include "gateway/warm/state_file.hpp"
#include "gateway/warm/state_store.hpp"

#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <ostream>
#include <sstream>

namespace warm = imagegate::warm;
namespace bdata = boost::unit_test::data;

namespace {

const std::string a1 = "023e105f4ecef8ad9ca31a8372d0c353";
const std::string a2 = "fedcba9876543210fedcba9876543210";
const std::string header = std::string(warm::state_header) + "\n";

// A valid job line of `account`, with `extra` appended (" name=value" fields) and `drop`
// (a field name) left out.
std::string job(const std::string& account, std::string_view extra = {},
                std::string_view drop = {}) {
    const std::vector<std::pair<std::string, std::string>> fields = {
        {"account", account}, {"state", "running"}, {"per_page", "100"},   {"position", "tok_1"},
        {"pages", "3"},       {"stored", "300"},    {"invalid", "1"},      {"refused", "2"},
        {"calls", "5"},       {"total", "2000"},    {"l2_written", "290"}, {"l2_failed", "10"}};
    std::string line = "job";
    for (const auto& [name, value] : fields) {
        if (name != drop) {
            line += " " + name + "=" + value;
        }
    }
    return line + std::string(extra) + "\n";
}

struct state_case {
    std::string name;
    std::string text;
    std::size_t jobs;                // jobs accepted
    std::vector<std::size_t> lines;  // lines refused (0: the whole file)
    std::string reason{};            // a refusal's reason contains this (when given)
};
std::ostream& operator<<(std::ostream& os, const state_case& c) { return os << c.name; }

const state_case cases[] = {
    // Good files.
    {"header only", header, 0, {}},
    {"one job", header + job(a1), 1, {}},
    {"two accounts", header + job(a1) + job(a2), 2, {}},
    {"empty position and unknown total",
     header + "job account=" + a1 +
         " state=cancelled per_page=10 position= pages=0 stored=0 invalid=0 refused=0 calls=0 "
         "total= l2_written=0 l2_failed=0\n",
     1,
     {}},
    {"fields in another order",
     header + "job total=5 state=done position= per_page=10000 account=" + a1 +
         " l2_failed=0 pages=1 stored=5 invalid=0 refused=0 calls=2 l2_written=5\n",
     1,
     {}},
    // A newer writer's fields are ignored; its format version is not.
    {"future fields", header + job(a1, " eta_ms=1500 shard=3"), 1, {}},
    {"future version", "imagegate-warm-state 2\n" + job(a1), 0, {0}, "another version"},
    {"no header", job(a1), 0, {0}, "not an imagegate warm state file"},
    {"empty file", "", 0, {0}},
    {"binary",
     std::string("\x7f"
                 "ELF\x02\x01\x01\0\0",
                 9),
     0,
     {0}},
    // Truncated: the cut line is refused, the whole ones kept.
    {"truncated in a line", header + job(a1) + job(a2).substr(0, 40), 1, {3}, "truncated"},
    {"truncated before the newline",
     header + job(a1) + job(a2).substr(0, job(a2).size() - 1),
     1,
     {3}},
    {"header without newline", std::string(warm::state_header), 0, {}},
    // Oversized.
    {"file over 256 KiB", header + std::string(warm::max_state_bytes, 'x'), 0, {0}, "256 KiB"},
    {"line over 2048 bytes",
     header + job(a1, " pad=" + std::string(2100, 'p')) + job(a2),
     1,
     {2},
     "longer"},
    // Bad accounts.
    {"account upper case", header + job("023E105F4ECEF8AD9CA31A8372D0C353"), 0, {2}, "account"},
    {"account too short", header + job(a1.substr(1)), 0, {2}, "account"},
    {"account with a path", header + job("../../../../etc/passwd0000000000"), 0, {2}, "account"},
    {"account missing", header + job(a1, {}, "account"), 0, {2}, "account missing"},
    // Bad tokens.
    {"token with a slash",
     header + job(a1, {}, "position").insert(4, "position=a/b "),
     0,
     {2},
     "position"},
    {"token with an ampersand",
     header + job(a1, {}, "position").insert(4, "position=a&b=c "),
     0,
     {2},
     "position"},
    {"token too long",
     header + job(a1, {}, "position").insert(4, "position=" + std::string(257, 't') + " "),
     0,
     {2},
     "position"},
    {"token with a control byte",
     header + job(a1, {}, "position").insert(4, "position=a\x01 "),
     0,
     {2}},
    {"token with UTF-8", header + job(a1, {}, "position").insert(4, "position=\xc3\xa9 "), 0, {2}},
    // Other bad fields and lines.
    {"per_page below 10",
     header + job(a1, {}, "per_page").insert(4, "per_page=9 "),
     0,
     {2},
     "per_page"},
    {"count overflows",
     header + job(a1, {}, "stored").insert(4, "stored=18446744073709551616 "),
     0,
     {2},
     "stored"},
    {"negative count", header + job(a1, {}, "pages").insert(4, "pages=-1 "), 0, {2}, "pages"},
    {"unknown state", header + job(a1, {}, "state").insert(4, "state=paused "), 0, {2}, "state"},
    {"a field twice", header + job(a1, " pages=4"), 0, {2}, "twice"},
    {"two spaces", header + job(a1).insert(3, " "), 0, {2}},
    {"trailing space", header + job(a1).insert(job(a1).size() - 1, " "), 0, {2}},
    {"done with a position",
     header + job(a1, {}, "state").insert(4, "state=done "),
     0,
     {2},
     "done"},
    {"same account twice", header + job(a1) + job(a1), 1, {3}, "same account"},
    {"empty line between jobs", header + job(a1) + "\n" + job(a2), 2, {3}},
    {"not a job line", header + "run account=" + a1 + "\n" + job(a2), 1, {2}},
    {"CRLF line ends", header + job(a1).insert(job(a1).size() - 1, "\r"), 0, {2}},
};

}  // namespace

BOOST_DATA_TEST_CASE(parses_what_it_may_and_refuses_the_rest, bdata::make(cases), c) {
    const auto st = warm::parse_state(c.text);
    BOOST_TEST(st.jobs.size() == c.jobs);
    std::vector<std::size_t> lines;
    for (const auto& r : st.refusals) {
        lines.push_back(r.line);
        BOOST_TEST(!r.reason.empty());
        // Reasons are our words: never a byte of the file (which may be anything).
        for (const char ch : r.reason) {
            BOOST_TEST((ch >= ' ' && ch < 0x7f));
        }
    }
    BOOST_TEST(lines == c.lines, boost::test_tools::per_element());
    if (!c.reason.empty()) {
        BOOST_TEST_REQUIRE(!st.refusals.empty());
        BOOST_TEST(st.refusals.front().reason.find(c.reason) != std::string::npos,
                   st.refusals.front().reason);
    }
}

BOOST_AUTO_TEST_CASE(a_good_line_gives_every_field) {
    const auto st = warm::parse_state(header + job(a1, " future=1"));
    BOOST_TEST_REQUIRE(st.jobs.size() == 1u);
    const auto& j = st.jobs.front();
    BOOST_TEST(j.account == a1);
    // The state as written: the warmer, not the parser, makes a running job interrupted.
    BOOST_TEST(warm::to_string(j.state) == "running");
    BOOST_TEST(j.per_page == 100u);
    BOOST_TEST(j.position == "tok_1");
    BOOST_TEST(j.pages == 3u);
    BOOST_TEST(j.stored == 300u);
    BOOST_TEST(j.invalid == 1u);
    BOOST_TEST(j.refused == 2u);
    BOOST_TEST(j.calls == 5u);
    BOOST_TEST(j.total.value_or(0) == 2000u);
    BOOST_TEST(j.l2_written == 290u);
    BOOST_TEST(j.l2_failed == 10u);
}

BOOST_AUTO_TEST_CASE(more_than_64_jobs_keeps_the_first_64) {
    std::string text = header;
    for (int i = 0; i < 70; ++i) {
        char account[33];
        std::snprintf(account, sizeof account, "%032x", i);
        text += job(account);
    }
    const auto st = warm::parse_state(text);
    BOOST_TEST(st.jobs.size() == warm::max_jobs);
    BOOST_TEST(st.refusals.size() == 6u);
    BOOST_TEST(st.refusals.front().reason.find("64") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(format_reads_back_the_same_jobs) {
    std::vector<warm::job_progress> jobs(3);
    jobs[0].account = a1;
    jobs[0].state = warm::job_state::waiting;
    jobs[0].per_page = 10000;
    jobs[0].position = "Zz09-._~";
    jobs[0].pages = 18446744073709551615ULL;
    jobs[0].total = warm::max_state_total;
    jobs[1].account = a2;
    jobs[1].state = warm::job_state::done;
    jobs[1].per_page = 10;
    jobs[1].l2_written = 7;
    jobs[1].l2_failed = 3;
    jobs[2].account = "00000000000000000000000000000000";
    jobs[2].state = warm::job_state::interrupted;
    jobs[2].per_page = 1000;
    jobs[2].position = std::string(warm::max_token_bytes, 'a');
    jobs[2].rate = 12.5;  // not kept: of a run
    jobs[2].last_error = "not kept either";
    const auto st = warm::parse_state(warm::format_state(jobs));
    BOOST_TEST(st.refusals.empty());
    BOOST_TEST_REQUIRE(st.jobs.size() == jobs.size());
    for (std::size_t i = 0; i < jobs.size(); ++i) {
        BOOST_TEST_CONTEXT(i) {
            const auto& a = jobs[i];
            const auto& b = st.jobs[i];
            BOOST_TEST(a.account == b.account);
            BOOST_TEST((a.state == b.state));
            BOOST_TEST(a.per_page == b.per_page);
            BOOST_TEST(a.position == b.position);
            BOOST_TEST(a.pages == b.pages);
            BOOST_TEST((a.total == b.total));
            BOOST_TEST(a.l2_written == b.l2_written);
            BOOST_TEST(a.l2_failed == b.l2_failed);
            BOOST_TEST(b.last_error.empty());
        }
    }
}

namespace {

struct scratch {
    scratch() {
        dir = std::filesystem::temp_directory_path() /
              ("imagegate-state-test-" + std::to_string(::getpid()));
        std::filesystem::remove_all(dir);
        std::filesystem::create_directories(dir);
    }
    ~scratch() { std::filesystem::remove_all(dir); }
    std::string read(const std::filesystem::path& p) const {
        std::ifstream in(p);
        std::stringstream ss;
        ss << in.rdbuf();
        return ss.str();
    }
    std::filesystem::path dir;
};

std::shared_ptr<spdlog::logger> quiet() {
    return std::make_shared<spdlog::logger>("t", std::make_shared<spdlog::sinks::null_sink_mt>());
}

}  // namespace

BOOST_FIXTURE_TEST_CASE(the_write_replaces_the_file_whole_with_mode_0600, scratch) {
    const auto file = (dir / "warm.state").string();
    BOOST_TEST(warm::write_state_file(file, "one\n").empty());
    ::umask(0);  // the mode must not depend on the umask
    BOOST_TEST(warm::write_state_file(file, "two\n").empty());
    ::umask(022);
    BOOST_TEST(read(file) == "two\n");
    struct stat st {};
    BOOST_TEST_REQUIRE(::stat(file.c_str(), &st) == 0);
    BOOST_TEST((st.st_mode & 07777) == 0600u);
    // No temporary file is left behind.
    std::size_t n = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) {
        ++n;
    }
    BOOST_TEST(n == 1u);
    // A missing directory is an error naming the path, and nothing is created.
    const auto missing = (dir / "no" / "warm.state").string();
    const auto error = warm::write_state_file(missing, "x\n");
    BOOST_TEST(error.find(missing) != std::string::npos, error);
    BOOST_TEST(!std::filesystem::exists(dir / "no"));
}

BOOST_FIXTURE_TEST_CASE(the_store_loads_the_valid_jobs_and_writes_the_newest_snapshot, scratch) {
    const auto file = (dir / "warm.state").string();
    {
        warm::state_store none(file, quiet());
        BOOST_TEST(none.load().empty());  // no file yet: no jobs, no error
    }
    {
        std::ofstream out(file);
        out << header << job(a1) << "job account=bogus\n" << job(a2).substr(0, 20);
    }
    {
        warm::state_store store(file, quiet());
        const auto jobs = store.load();
        BOOST_TEST_REQUIRE(jobs.size() == 1u);  // the bogus and the cut lines are refused
        BOOST_TEST(jobs.front().account == a1);
        // Snapshots are numbered: one older than what was written is skipped.
        store.save_detached(2, header + job(a2));
        store.save_detached(1, header + job(a1));
    }  // destroying the store waits for its writes
    BOOST_TEST(read(file) == header + job(a2));
}
