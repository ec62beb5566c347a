# Build helpers shared by every folder: one kiln_cc_library per folder, one kiln_cc_test
# per test binary, each with CTest labels (unit, integration, golden, fuzz, gpu, slow).

set(KILN_CXX_WARNINGS -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor)

# kiln_cc_library(NAME name SRCS ... [HDRS ...] [DEPS ...] [PRIVATE_DEPS ...])
# A static library whose include root is the repository root ("engine/io/foo.h").
function(kiln_cc_library)
  cmake_parse_arguments(K "" "NAME" "SRCS;HDRS;DEPS;PRIVATE_DEPS" ${ARGN})
  if(K_SRCS)
    add_library(${K_NAME} STATIC ${K_SRCS} ${K_HDRS})
    target_include_directories(${K_NAME} PUBLIC ${PROJECT_SOURCE_DIR})
    target_compile_options(${K_NAME} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:${KILN_CXX_WARNINGS}>)
    target_link_libraries(${K_NAME} PUBLIC ${K_DEPS} PRIVATE ${K_PRIVATE_DEPS})
  else()
    add_library(${K_NAME} INTERFACE ${K_HDRS})
    target_include_directories(${K_NAME} INTERFACE ${PROJECT_SOURCE_DIR})
    target_link_libraries(${K_NAME} INTERFACE ${K_DEPS})
  endif()
endfunction()

# kiln_cc_test(NAME name SRCS ... [DEPS ...] [LABELS unit ...] [TIMEOUT s] [NO_MAIN])
# A GoogleTest binary; each TEST becomes a CTest entry carrying LABELS. Discovery runs at
# ctest time (PRE_TEST) so a binary that cannot start on this host never breaks the build.
function(kiln_cc_test)
  cmake_parse_arguments(K "NO_MAIN" "NAME;TIMEOUT" "SRCS;DEPS;LABELS" ${ARGN})
  if(NOT K_LABELS)
    set(K_LABELS unit)
  endif()
  if(NOT K_TIMEOUT)
    set(K_TIMEOUT 120)
  endif()
  add_executable(${K_NAME} ${K_SRCS})
  target_compile_options(${K_NAME} PRIVATE ${KILN_CXX_WARNINGS})
  target_include_directories(${K_NAME} PRIVATE ${PROJECT_SOURCE_DIR})
  if(K_NO_MAIN)
    target_link_libraries(${K_NAME} PRIVATE ${K_DEPS} GTest::gtest GTest::gmock)
  else()
    target_link_libraries(${K_NAME} PRIVATE ${K_DEPS} GTest::gtest_main GTest::gmock)
  endif()
  target_compile_definitions(${K_NAME} PRIVATE
    KILN_SOURCE_DIR="${PROJECT_SOURCE_DIR}" KILN_BINARY_DIR="${PROJECT_BINARY_DIR}")
  gtest_discover_tests(${K_NAME}
    DISCOVERY_MODE PRE_TEST DISCOVERY_TIMEOUT 60
    PROPERTIES LABELS "${K_LABELS}" TIMEOUT ${K_TIMEOUT})
endfunction()
