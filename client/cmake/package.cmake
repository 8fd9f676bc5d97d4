# The installed CMake package: find_package(sluice) then sluice::producer / sluice::consumer.
# Installs (component sluice_dev) the public headers under include/sluice (so their own
# "common/result.h" style includes resolve), the static libraries they need, and
# sluiceConfig.cmake, which finds the third-party libraries those static libraries use.
include(CMakePackageConfigHelpers)
include(GNUInstallDirs)

set(SLUICE_PACKAGE_TARGETS sluice_common sluice_protocol sluice_partitioner sluice_sasl
                           sluice_client sluice_producer sluice_consumer)
set_target_properties(sluice_common PROPERTIES EXPORT_NAME common)
set_target_properties(sluice_protocol PROPERTIES EXPORT_NAME protocol)
set_target_properties(sluice_partitioner PROPERTIES EXPORT_NAME partitioner)
set_target_properties(sluice_sasl PROPERTIES EXPORT_NAME sasl)
set_target_properties(sluice_client PROPERTIES EXPORT_NAME client)
set_target_properties(sluice_producer PROPERTIES EXPORT_NAME producer)
set_target_properties(sluice_consumer PROPERTIES EXPORT_NAME consumer)
target_include_directories(sluice_common INTERFACE
                           $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}/sluice>)

install(TARGETS ${SLUICE_PACKAGE_TARGETS} EXPORT sluiceTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT sluice_dev)
install(FILES ${PROJECT_SOURCE_DIR}/common/result.h ${PROJECT_SOURCE_DIR}/common/assert.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/sluice/common COMPONENT sluice_dev)
install(FILES ${PROJECT_SOURCE_DIR}/client/errors.h ${PROJECT_SOURCE_DIR}/client/callbacks.h
              ${PROJECT_SOURCE_DIR}/client/security.h ${PROJECT_SOURCE_DIR}/client/topic_partition.h
              ${PROJECT_SOURCE_DIR}/client/group_metadata.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/sluice/client COMPONENT sluice_dev)
install(FILES ${PROJECT_SOURCE_DIR}/producer/producer.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/sluice/producer COMPONENT sluice_dev)
install(FILES ${PROJECT_SOURCE_DIR}/consumer/consumer.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/sluice/consumer COMPONENT sluice_dev)
install(EXPORT sluiceTargets NAMESPACE sluice:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/sluice
        COMPONENT sluice_dev)
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/sluiceConfig.cmake.in
                              ${CMAKE_CURRENT_BINARY_DIR}/sluiceConfig.cmake
                              INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/sluice)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/sluiceConfigVersion.cmake
                                 VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/sluiceConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/sluiceConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/sluice COMPONENT sluice_dev)

# CI check: install into a temporary prefix, then build examples/ out of tree against it.
set(SLUICE_EXAMPLE_FLAGS "")
if(SLUICE_SANITIZE)
  set(SLUICE_EXAMPLE_FLAGS "-fsanitize=address,undefined")
endif()
add_test(NAME client_package_test
         COMMAND ${CMAKE_COMMAND} -DBINARY_DIR=${PROJECT_BINARY_DIR}
                 -DEXAMPLES_DIR=${PROJECT_SOURCE_DIR}/examples
                 -DWORK=${CMAKE_CURRENT_BINARY_DIR}/package-test
                 -DCXX=${CMAKE_CXX_COMPILER} -DCXX_FLAGS=${SLUICE_EXAMPLE_FLAGS}
                 -P ${CMAKE_CURRENT_LIST_DIR}/package_test.cmake)
set_tests_properties(client_package_test PROPERTIES LABELS unit TIMEOUT 300)
sluice_checked_target(${SLUICE_PACKAGE_TARGETS})
