# Helpers shared by the component CMakeLists files.

# sluice_checked_target(TARGET...): the checked build runs the tests labelled unit, fuzz and sim
# (scripts/test); those need only these targets, which `checked_tests` builds (the CLI, the
# benchmarks and the integration-test programs are left out: a third of the checked build).
function(sluice_checked_target)
  set_property(GLOBAL APPEND PROPERTY SLUICE_CHECKED_TARGETS ${ARGN})
endfunction()

# sluice_test(NAME SOURCES a_test.cc ... LIBS lib ... [LABELS unit|integration|sim])
# One GoogleTest program; each TEST becomes its own ctest entry (discovered when ctest runs),
# named "<program>.<Suite>.<Test>" so `ctest -R <program>` selects one component's tests.
function(sluice_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  if(NOT T_LABELS)
    set(T_LABELS unit)
  endif()
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE ${T_LIBS} GTest::gtest GTest::gtest_main GTest::gmock)
  if(T_LABELS MATCHES "unit|sim")
    sluice_checked_target(${name})
  endif()
  gtest_discover_tests(${name} DISCOVERY_MODE PRE_TEST TEST_PREFIX "${name}."
                       PROPERTIES LABELS "${T_LABELS}" TIMEOUT ${T_TIMEOUT}
                       ENVIRONMENT "SLUICE_SOURCE_DIR=${PROJECT_SOURCE_DIR};SLUICE_BINARY_DIR=${PROJECT_BINARY_DIR}")
endfunction()

# sluice_benchmark(NAME SOURCES ... LIBS ...): a Google Benchmark program (not run by ctest).
function(sluice_benchmark name)
  if(NOT SLUICE_BENCHMARKS)
    return()
  endif()
  cmake_parse_arguments(B "" "" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${B_SOURCES})
  target_link_libraries(${name} PRIVATE ${B_LIBS} benchmark::benchmark benchmark::benchmark_main)
endfunction()

# sluice_fuzzer(NAME SOURCE file.cc LIBS ... CORPUS dir [SECONDS n])
# With SLUICE_FUZZ: a libFuzzer binary, run by ctest for SECONDS over a copy of the corpus.
# Without: the same entry point linked to a small driver that replays every corpus file,
# so the optimised build checks the committed corpus too.
function(sluice_fuzzer name)
  cmake_parse_arguments(F "" "SOURCE;CORPUS;SECONDS" "LIBS" ${ARGN})
  if(NOT F_SECONDS)
    set(F_SECONDS 60)
  endif()
  add_executable(${name} ${F_SOURCE})
  target_link_libraries(${name} PRIVATE ${F_LIBS})
  sluice_checked_target(${name})
  if(SLUICE_FUZZ)
    target_compile_options(${name} PRIVATE -fsanitize=fuzzer)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
    add_test(NAME ${name}
             COMMAND ${CMAKE_COMMAND} -DFUZZER=$<TARGET_FILE:${name}> -DCORPUS=${F_CORPUS}
                     -DWORK=${CMAKE_CURRENT_BINARY_DIR}/${name}-work -DSECONDS=${F_SECONDS}
                     -P ${PROJECT_SOURCE_DIR}/cmake/run_fuzzer.cmake)
    set_tests_properties(${name} PROPERTIES LABELS fuzz TIMEOUT 600)
  else()
    target_sources(${name} PRIVATE ${PROJECT_SOURCE_DIR}/common/fuzz_replay_main.cc)
    add_test(NAME ${name} COMMAND ${name} ${F_CORPUS})
    set_tests_properties(${name} PROPERTIES LABELS unit TIMEOUT 300)
  endif()
endfunction()

# sluice_unity(TARGET...): compiles the target's sources a few at a time in one translation
# unit (CMake's unity build). Their headers (Boost.Asio, protobuf, the generated messages)
# took about half of each source's compile time, and the targets with many sources dominate
# the build; this halves them. The sources of such a target keep their file-local names
# distinct (an anonymous namespace is shared within a batch). SLUICE_UNITY=OFF turns it off.
option(SLUICE_UNITY "Unity-build the targets with many sources" ON)
function(sluice_unity)
  if(NOT SLUICE_UNITY)
    return()
  endif()
  foreach(target ${ARGN})
    set_target_properties(${target} PROPERTIES UNITY_BUILD ON UNITY_BUILD_BATCH_SIZE 6)
  endforeach()
endfunction()
