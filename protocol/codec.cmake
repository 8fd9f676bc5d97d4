# The Kafka message codec: protocol/gen/kafka_codegen.py turns protocol/schema/*.schema into
# C++ (messages.h and one messages_<Api>.cc per API) in the build folder at build time.
file(GLOB SLUICE_SCHEMAS CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/schema/*.schema)
file(GLOB SLUICE_REQUEST_SCHEMAS CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/schema/*Request.schema)
set(SLUICE_GEN_DIR ${CMAKE_CURRENT_BINARY_DIR}/gen)
set(SLUICE_GEN_SOURCES ${SLUICE_GEN_DIR}/protocol/messages_dispatch.cc)
foreach(schema ${SLUICE_REQUEST_SCHEMAS})
  get_filename_component(api ${schema} NAME_WE)
  string(REGEX REPLACE "Request$" "" api ${api})
  list(APPEND SLUICE_GEN_SOURCES ${SLUICE_GEN_DIR}/protocol/messages_${api}.cc)
endforeach()
set(SLUICE_GEN_TESTING ${SLUICE_GEN_DIR}/protocol/messages_testing.cc)
add_custom_command(
  OUTPUT ${SLUICE_GEN_DIR}/protocol/messages.h ${SLUICE_GEN_SOURCES}
         ${SLUICE_GEN_DIR}/protocol/messages_testing.h ${SLUICE_GEN_TESTING}
  COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/gen/kafka_codegen.py
          --schema-dir ${CMAKE_CURRENT_LIST_DIR}/schema --out-dir ${SLUICE_GEN_DIR}
  DEPENDS ${CMAKE_CURRENT_LIST_DIR}/gen/kafka_codegen.py ${SLUICE_SCHEMAS}
  COMMENT "Generating the Kafka message codec from protocol/schema"
  VERBATIM)

target_sources(sluice_protocol PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/codec.cc
  ${CMAKE_CURRENT_LIST_DIR}/message_frame.cc
  ${SLUICE_GEN_DIR}/protocol/messages.h
  ${SLUICE_GEN_SOURCES})
target_include_directories(sluice_protocol PUBLIC $<BUILD_INTERFACE:${SLUICE_GEN_DIR}>)

# Example messages for tests, the fuzz corpus and benchmarks (not part of the library).
add_library(sluice_protocol_testing STATIC ${SLUICE_GEN_TESTING})
target_link_libraries(sluice_protocol_testing PUBLIC sluice_protocol)

sluice_test(codec_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/codec_test.cc ${CMAKE_CURRENT_LIST_DIR}/codec_roundtrip_test.cc
          ${CMAKE_CURRENT_LIST_DIR}/codec_golden_test.cc
  LIBS sluice_protocol sluice_protocol_testing)
sluice_benchmark(codec_bench SOURCES ${CMAKE_CURRENT_LIST_DIR}/codec_bench.cc LIBS sluice_protocol)
sluice_fuzzer(protocol_request_fuzz SOURCE ${CMAKE_CURRENT_LIST_DIR}/fuzz/request_fuzz.cc
              LIBS sluice_protocol CORPUS ${CMAKE_CURRENT_LIST_DIR}/fuzz/request_corpus SECONDS 60)

# A one-off tool that records the first requests of real clients (protocol/tools/README.md).
add_executable(codec_capture ${CMAKE_CURRENT_LIST_DIR}/tools/capture.cc)
target_link_libraries(codec_capture PRIVATE sluice_protocol)
