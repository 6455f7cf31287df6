# dfb_transcode: JSON tape (yajl) + msgpack transcoder + envelope.
# A static library of its own so the bridge, the benchmarks and the consumer
# tests link it alone. Tests: json_* and transcode_* (ctest).
add_library(dfb_transcode STATIC
  ${CMAKE_CURRENT_LIST_DIR}/dfb_json.c
  ${CMAKE_CURRENT_LIST_DIR}/dfb_transcode.c)
target_include_directories(dfb_transcode PUBLIC ${CMAKE_CURRENT_LIST_DIR})
# Self-tests in the library files use the one CHECK macro set.
target_include_directories(dfb_transcode PRIVATE ${PROJECT_SOURCE_DIR}/tests/include)
target_link_libraries(dfb_transcode PUBLIC PkgConfig::YAJL)

# Self-tests of the tape (navigation, numbers, errors, reuse, limits).
add_executable(dfb_json_test ${CMAKE_CURRENT_LIST_DIR}/dfb_json_test.c)
target_link_libraries(dfb_json_test PRIVATE dfb_transcode)
add_test(NAME json_selftest COMMAND dfb_json_test)
set_tests_properties(json_selftest PROPERTIES TIMEOUT 60)

# Transcoder self-test and the golden vectors of schemas/golden, read with
# jansson (test-only) so the check does not depend on the code under test.
add_executable(dfb_transcode_test ${CMAKE_CURRENT_LIST_DIR}/dfb_transcode_test.c)
target_link_libraries(dfb_transcode_test PRIVATE dfb_transcode PkgConfig::JANSSON
                      PkgConfig::MSGPACK)
add_test(NAME transcode_selftest COMMAND dfb_transcode_test --self)
add_test(NAME transcode_golden COMMAND dfb_transcode_test
         ${PROJECT_SOURCE_DIR}/schemas/golden/vectors.json)
# 20000 seeded random edits of the vectors: rejected with an offset, or
# transcoded to one complete msgpack object (checked with msgpack-c).
add_test(NAME transcode_mutations COMMAND dfb_transcode_test
         ${PROJECT_SOURCE_DIR}/schemas/golden/vectors.json --mutate 20000)
set_tests_properties(transcode_selftest transcode_golden transcode_mutations
                     PROPERTIES TIMEOUT 60)

# The same vectors from the Python side, with Debian's python3-msgpack.
# /usr/bin/python3 on purpose: a pyenv or venv python lacks the Debian module.
add_test(NAME schemas_golden_python
         COMMAND /usr/bin/python3 ${PROJECT_SOURCE_DIR}/schemas/golden/check.py
                 ${PROJECT_SOURCE_DIR}/schemas/golden/vectors.json)
# The stored vectors are exactly what generate.py produces today.
add_test(NAME schemas_golden_fresh
         COMMAND /usr/bin/python3 ${PROJECT_SOURCE_DIR}/schemas/golden/generate.py
                 --check ${PROJECT_SOURCE_DIR}/schemas/golden/vectors.json)
set_tests_properties(schemas_golden_python schemas_golden_fresh PROPERTIES TIMEOUT 60)

# After warm-up a parse allocates nothing: 1 and 300 reuse rounds must show
# the same number of heap allocations under valgrind (and no leak or error).
# (Not with DF_SANITIZE: ASan and valgrind do not mix.)
df_add_noalloc_test(json_reuse_noalloc dfb_json_test --reuse)
