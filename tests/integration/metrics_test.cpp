// /metrics as a scraper reads it, from a live gateway in each auth mode after traffic of every
// kind: every family declared once (HELP, then TYPE, then its samples), no sample twice, names
// and labels well-formed, counters named *_total, values numbers. Metric names are rendered
// by several components (image route, gate, upstream client, listeners, Redis); this is the
// check that they add up to one valid exposition.
#define BOOST_TEST_MODULE metrics_test
#include "tests/integration/gateway_fixture.hpp"

#include <boost/beast/http/verb.hpp>

#include <charconv>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace ts = imagegate::testing;
using namespace std::chrono_literals;

namespace {

bool valid_name(std::string_view n) {
    if (n.empty() || !(std::isalpha(static_cast<unsigned char>(n[0])) || n[0] == '_')) {
        return false;
    }
    for (const char c : n) {
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) {
            return false;
        }
    }
    return true;
}

/// `{a="x",b="y"}`: label names valid and unique, values quoted with \\, \" and \n escapes.
bool valid_labels(std::string_view l) {
    if (l.empty()) {
        return true;
    }
    if (l.front() != '{' || l.back() != '}') {
        return false;
    }
    l = l.substr(1, l.size() - 2);
    std::set<std::string> seen;
    while (!l.empty()) {
        const auto eq = l.find('=');
        if (eq == std::string_view::npos || !valid_name(l.substr(0, eq)) ||
            !seen.insert(std::string(l.substr(0, eq))).second || eq + 1 >= l.size() ||
            l[eq + 1] != '"') {
            return false;
        }
        std::size_t i = eq + 2;
        for (; i < l.size() && l[i] != '"'; ++i) {
            if (l[i] == '\\') {
                if (++i >= l.size() || (l[i] != '\\' && l[i] != '"' && l[i] != 'n')) {
                    return false;
                }
            }
        }
        if (i >= l.size()) {
            return false;
        }
        l = l.substr(i + 1);
        if (!l.empty()) {
            if (l.front() != ',') {
                return false;
            }
            l = l.substr(1);
        }
    }
    return true;
}

/// The family a sample belongs to: histograms add _bucket, _sum and _count.
std::string family_of(const std::string& sample, const std::map<std::string, std::string>& types) {
    for (const std::string suffix : {"_bucket", "_sum", "_count"}) {
        if (sample.size() > suffix.size() && sample.ends_with(suffix)) {
            const auto base = sample.substr(0, sample.size() - suffix.size());
            if (auto it = types.find(base); it != types.end() && it->second == "histogram") {
                return base;
            }
        }
    }
    return sample;
}

/// Every problem with `text` as a Prometheus text exposition (format 0.0.4), one per line.
std::vector<std::string> lint(const std::string& text) {
    std::vector<std::string> problems;
    std::map<std::string, std::string> types;
    std::set<std::string> helped;
    std::set<std::string> families_with_samples;
    std::set<std::string> samples;
    std::string current;  // the family whose TYPE came last
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty()) {
            continue;
        }
        if (line.starts_with("# HELP ") || line.starts_with("# TYPE ")) {
            const bool help = line[2] == 'H';
            const auto rest = line.substr(7);
            const auto sp = rest.find(' ');
            const std::string name = rest.substr(0, sp);
            if (!valid_name(name)) {
                problems.push_back("bad family name: " + line);
                continue;
            }
            if (help) {
                if (!helped.insert(name).second) {
                    problems.push_back("HELP twice: " + name);
                }
                if (types.contains(name)) {
                    problems.push_back("HELP after TYPE: " + name);
                }
                if (sp == std::string::npos || sp + 1 >= rest.size()) {
                    problems.push_back("empty HELP: " + name);
                }
            } else {
                const std::string type = sp == std::string::npos ? "" : rest.substr(sp + 1);
                if (type != "counter" && type != "gauge" && type != "histogram") {
                    problems.push_back("unknown TYPE: " + line);
                }
                if (types.contains(name) || families_with_samples.contains(name)) {
                    problems.push_back("family declared twice: " + name);
                }
                if (!helped.contains(name)) {
                    problems.push_back("TYPE without HELP: " + name);
                }
                if (type == "counter" && !name.ends_with("_total")) {
                    problems.push_back("counter not named *_total: " + name);
                }
                types[name] = type;
                current = name;
            }
            continue;
        }
        if (line.starts_with("#")) {
            continue;
        }
        const auto brace = line.find('{');
        const auto space = line.rfind(' ');
        if (space == std::string::npos) {
            problems.push_back("sample without value: " + line);
            continue;
        }
        const auto name_end = std::min(brace, space);
        const std::string name = line.substr(0, name_end);
        const std::string labels = line.substr(name_end, space - name_end);
        const std::string value = line.substr(space + 1);
        if (!valid_name(name) || !name.starts_with("imagegate_")) {
            problems.push_back("bad sample name: " + line);
        }
        if (!valid_labels(labels)) {
            problems.push_back("bad labels: " + line);
        }
        double v = 0;
        const auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
        if (ec != std::errc{} || p != value.data() + value.size()) {
            if (value != "+Inf" && value != "-Inf" && value != "NaN") {
                problems.push_back("bad value: " + line);
            }
        }
        const std::string family = family_of(name, types);
        if (!types.contains(family)) {
            problems.push_back("sample without TYPE: " + line);
        } else if (family != current) {
            problems.push_back("sample away from its family's block: " + line);
        }
        families_with_samples.insert(family);
        if (!samples.insert(name + labels).second) {
            problems.push_back("sample twice: " + name + labels);
        }
    }
    for (const auto& [name, type] : types) {
        if (!families_with_samples.contains(name)) {
            problems.push_back("family without samples: " + name);
        }
    }
    return problems;
}

/// Traffic of every kind: a miss, a hit, a not-found, a refused request, a bad target.
void exercise(ts::gateway_runner& gw, const ts::header_list& h = {}) {
    gw.get(gw.image_path("m-1"), h);
    gw.get(gw.image_path("m-1"), h);
    gw.get(gw.image_path("missing-1"), h);
    gw.get("/client/v4/accounts/nope/images/v1/x", h);
    gw.get("/other", h);
}

void check_exposition(ts::gateway_runner& gw) {
    const auto r = ts::request(gw.admin(), boost::beast::http::verb::get, "/metrics");
    BOOST_REQUIRE(r.status == 200u);
    BOOST_TEST(r.header("Content-Type").starts_with("text/plain"));
    for (const auto& p : lint(r.body)) {
        BOOST_ERROR(p);
    }
    BOOST_TEST(r.body.find("imagegate_cache_hits_total") != std::string::npos);
    std::size_t families = 0;
    for (auto pos = r.body.find("# TYPE "); pos != std::string::npos;
         pos = r.body.find("# TYPE ", pos + 1)) {
        ++families;
    }
    BOOST_TEST(families >= 40u);  // every component rendered, not an empty page
}

}  // namespace

BOOST_AUTO_TEST_CASE(the_linter_finds_what_it_is_for) {
    struct row {
        std::string text;
        std::string problem;  // a substring of the expected first problem; empty: clean
    };
    const row rows[] = {
        {"# HELP imagegate_a_total A.\n# TYPE imagegate_a_total counter\nimagegate_a_total 1\n",
         ""},
        {"# HELP imagegate_a_total A.\n# TYPE imagegate_a_total counter\nimagegate_a_total 1\n"
         "# HELP imagegate_a_total A.\n# TYPE imagegate_a_total counter\nimagegate_a_total 2\n",
         "HELP twice"},
        {"# HELP imagegate_a A.\n# TYPE imagegate_a counter\nimagegate_a 1\n", "*_total"},
        {"# HELP imagegate_g G.\n# TYPE imagegate_g gauge\nimagegate_g{x=\"1\"} 1\n"
         "imagegate_g{x=\"1\"} 2\n",
         "sample twice"},
        {"# HELP imagegate_g G.\n# TYPE imagegate_g gauge\nimagegate_g{x=1} 1\n", "bad labels"},
        {"imagegate_g 1\n", "sample without TYPE"},
        {"# HELP imagegate_h H.\n# TYPE imagegate_h histogram\n"
         "imagegate_h_bucket{le=\"+Inf\"} 1\nimagegate_h_sum 0.5\nimagegate_h_count 1\n",
         ""},
        {"# HELP imagegate_g G.\n# TYPE imagegate_g gauge\nimagegate_g one\n", "bad value"},
    };
    for (const auto& r : rows) {
        const auto problems = lint(r.text);
        if (r.problem.empty()) {
            BOOST_TEST(problems.empty(), r.text);
        } else {
            BOOST_TEST_REQUIRE(!problems.empty(), r.text);
            BOOST_TEST(problems.front().find(r.problem) != std::string::npos,
                       problems.front() << " vs " << r.problem);
        }
    }
}

BOOST_FIXTURE_TEST_CASE(token_mode_exposition_is_valid, ts::emulated_upstream) {
    ts::gateway_runner gw(settings);
    exercise(gw);
    check_exposition(gw);
}

BOOST_FIXTURE_TEST_CASE(passthrough_exposition_is_valid, ts::emulated_upstream) {
    settings.auth.mode = "passthrough";
    ts::gateway_runner gw(settings);
    exercise(gw, {{"Authorization", "Bearer " + emu->token()}});
    check_exposition(gw);
}
