// Test module of unit_shield: budget arithmetic and its rate invariant, the upstream's
// Retry-After / Ratelimit signals, and the retry rule. Pure: no sockets, no clock reads.
#define BOOST_TEST_MODULE unit_shield
#include <boost/test/unit_test.hpp>
