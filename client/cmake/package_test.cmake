# cmake -DBINARY_DIR=... -DEXAMPLES_DIR=... -DWORK=... -DCXX=... [-DCXX_FLAGS=...] -P package_test.cmake
file(REMOVE_RECURSE ${WORK})
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
endfunction()
run(${CMAKE_COMMAND} --install ${BINARY_DIR} --prefix ${WORK}/prefix --component sluice_dev)
run(${CMAKE_COMMAND} -S ${EXAMPLES_DIR} -B ${WORK}/build -G Ninja -DCMAKE_PREFIX_PATH=${WORK}/prefix
    -DCMAKE_CXX_COMPILER=${CXX} "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}"
    "-DCMAKE_EXE_LINKER_FLAGS=${CXX_FLAGS}")
run(${CMAKE_COMMAND} --build ${WORK}/build)
foreach(program producer_example consumer_example)
  run(${WORK}/build/${program} --help)
endforeach()
message(STATUS "examples built against the installed package in ${WORK}/prefix")
