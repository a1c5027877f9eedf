// Test module of unit_cache: keys, entries, the LRU policy and the sharded cache.
#define BOOST_TEST_MODULE unit_cache
#include <boost/test/unit_test.hpp>
