# Project-wide helpers: warnings fallback, compiler cache, the test registration helper.

if(NOT CMAKE_BUILD_TYPE AND NOT CMAKE_CONFIGURATION_TYPES)
  set(CMAKE_BUILD_TYPE Release CACHE STRING "Build type" FORCE)
endif()

set(CMAKE_CXX_EXTENSIONS OFF)
set(CMAKE_EXPORT_COMPILE_COMMANDS ON)

# A compiler cache makes rebuilds on 2 cores bearable; used only when installed.
find_program(IMAGEGATE_CCACHE ccache)
if(IMAGEGATE_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_CXX_COMPILER_LAUNCHER ${IMAGEGATE_CCACHE})
endif()

# Warnings for builds that do not come from a preset (presets carry their own flags).
add_library(imagegate_warnings INTERFACE)
# GCC 12 at -O2/-O3 reports false -Wrestrict errors inside libstdc++'s std::string (GCC
# PR 105329) and Boost.Test 1.81's data-driven test naming: off everywhere, so the ci
# preset's -Werror stays usable.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  target_compile_options(imagegate_warnings INTERFACE -Wno-restrict)
endif()
if(NOT IMAGEGATE_PRESET_FLAGS)
  target_compile_options(imagegate_warnings INTERFACE -Wall -Wextra -Wpedantic -Wshadow
                                                      -Wcast-qual)
endif()

# Sanitizer presets compile the product at -O1 and the test code (test cases, the emulator,
# the test clients) at -O0: instrumented all the same, but GCC optimising instrumented,
# coroutine-heavy test code tripled the ASan build (the emulator alone: 344 s at -O1, 111 s
# at -O0) and checks nothing more. The ci preset builds the product as released (-O3) and
# the test code at -O1 (IMAGEGATE_TEST_CODE_OPTIONS in CMakePresets.json): half of its
# translation units are test code, and -O3 there only slows the build (binary_test.cpp:
# 24 s at -O3, 14 s at -O1). imagegate_test_code(target) marks a target as test code.
# (simdjson's parser layout must not depend on the level: see the top-level CMakeLists.txt.)
if(NOT DEFINED IMAGEGATE_TEST_CODE_OPTIONS AND CMAKE_CXX_FLAGS MATCHES "-fsanitize=")
  set(IMAGEGATE_TEST_CODE_OPTIONS -O0)
endif()
# GCC 12 at -O1 inlines Asio's awaitable frame allocation into some coroutines and then
# reports its own aligned operator new/delete pair as mismatched (-Wmismatched-new-delete, a
# false positive: Boost 1.81's thread_info_base::allocate/deallocate match); -O3 and -O0
# do not. Off for test code built at an optimisation level of its own.
if(IMAGEGATE_TEST_CODE_OPTIONS AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  list(APPEND IMAGEGATE_TEST_CODE_OPTIONS -Wno-mismatched-new-delete)
endif()
function(imagegate_test_code target)
  target_compile_options(${target} PRIVATE ${IMAGEGATE_TEST_CODE_OPTIONS})
endfunction()

# imagegate_add_library(NAME name SOURCES ... LIBS ...): one static library per folder.
function(imagegate_add_library)
  cmake_parse_arguments(A "" "NAME" "SOURCES;LIBS" ${ARGN})
  add_library(${A_NAME} STATIC ${A_SOURCES})
  target_compile_features(${A_NAME} PUBLIC cxx_std_20)
  target_include_directories(${A_NAME} PUBLIC ${PROJECT_SOURCE_DIR})
  target_link_libraries(${A_NAME} PUBLIC ${A_LIBS} PRIVATE imagegate_warnings)
endfunction()

# imagegate_add_test(NAME n SOURCES ... LIBS ... LABELS ... TIMEOUT s): one Boost.Test
# executable, registered with ctest. Tests labelled `concurrency` (threads, strands, shared
# state) are also collected into the `concurrency_tests` target, which the tsan preset
# builds (tests/run-all.sh).
function(imagegate_add_test)
  cmake_parse_arguments(A "" "NAME;TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  if(NOT A_TIMEOUT)
    set(A_TIMEOUT 300)
  endif()
  add_executable(${A_NAME} ${A_SOURCES})
  imagegate_test_code(${A_NAME})
  target_compile_features(${A_NAME} PRIVATE cxx_std_20)
  target_compile_definitions(${A_NAME} PRIVATE BOOST_TEST_DYN_LINK
                             IMAGEGATE_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
  target_link_libraries(${A_NAME} PRIVATE ${A_LIBS} Boost::unit_test_framework
                                          imagegate_warnings)
  add_test(NAME ${A_NAME} COMMAND ${A_NAME} --log_level=test_suite --report_level=short)
  set_tests_properties(${A_NAME} PROPERTIES LABELS "${A_LABELS}" TIMEOUT ${A_TIMEOUT})
  if("concurrency" IN_LIST A_LABELS)
    set_property(GLOBAL APPEND PROPERTY IMAGEGATE_CONCURRENCY_TESTS ${A_NAME})
  endif()
endfunction()

# gateway/core/version.hpp must say the same version as project(VERSION).
file(READ ${PROJECT_SOURCE_DIR}/gateway/core/version.hpp IMAGEGATE_VERSION_HPP)
if(NOT IMAGEGATE_VERSION_HPP MATCHES "version = \"${PROJECT_VERSION}\"")
  message(FATAL_ERROR "gateway/core/version.hpp does not match project version ${PROJECT_VERSION}")
endif()
