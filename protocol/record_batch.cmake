# Record batch v2, CRC-32C, varints, compression codecs and Kafka error codes.
target_sources(sluice_protocol PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/compression.cc
  ${CMAKE_CURRENT_LIST_DIR}/crc32c.cc
  ${CMAKE_CURRENT_LIST_DIR}/error_codes.cc
  ${CMAKE_CURRENT_LIST_DIR}/acl_types.cc
  ${CMAKE_CURRENT_LIST_DIR}/record_batch.cc)

sluice_test(protocol_batch_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/record_batch_test.cc ${CMAKE_CURRENT_LIST_DIR}/crc32c_test.cc
          ${CMAKE_CURRENT_LIST_DIR}/compression_test.cc
  LIBS sluice_protocol)
sluice_benchmark(protocol_crc32c_bench SOURCES ${CMAKE_CURRENT_LIST_DIR}/crc32c_bench.cc
                 LIBS sluice_protocol)
sluice_fuzzer(protocol_batch_fuzz SOURCE ${CMAKE_CURRENT_LIST_DIR}/fuzz/batch_fuzz.cc
              LIBS sluice_protocol CORPUS ${CMAKE_CURRENT_LIST_DIR}/fuzz/batch_corpus SECONDS 60)

# Legacy message sets (magic 0 and 1): Produce v0-2 up-conversion, Fetch v0-3 down-conversion.
target_sources(sluice_protocol PRIVATE ${CMAKE_CURRENT_LIST_DIR}/legacy_messages.cc)
sluice_test(protocol_legacy_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/legacy_messages_test.cc
            LIBS sluice_protocol)
sluice_fuzzer(protocol_legacy_fuzz SOURCE ${CMAKE_CURRENT_LIST_DIR}/fuzz/legacy_fuzz.cc
              LIBS sluice_protocol CORPUS ${CMAKE_CURRENT_LIST_DIR}/fuzz/legacy_corpus SECONDS 60)
