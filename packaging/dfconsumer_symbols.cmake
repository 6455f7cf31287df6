# The shared libdfconsumer exports only its public API: the functions that
# consumers/include/dfconsumer.h declares. This writes the linker version
# script from the header itself, so a function added there is exported with
# no second list to keep (packaging/tests/install_files.sh checks the .so).
function(dfc_write_version_script header out)
  file(READ "${header}" text)
  # A declaration names the function right after its return type: "int dfc_x(",
  # "const char *dfc_x(". Function-pointer members ("(*dfc_x)(") do not match.
  string(REGEX MATCHALL "[ *\n]dfc_[a-z0-9_]+ ?\\(" hits "${text}")
  set(names)
  foreach(h ${hits})
    string(REGEX REPLACE "[^a-z0-9_]" "" n "${h}")
    list(APPEND names "${n}")
  endforeach()
  list(REMOVE_DUPLICATES names)
  list(SORT names)
  list(LENGTH names count)
  if(count EQUAL 0)
    message(FATAL_ERROR "no dfc_ function found in ${header}")
  endif()
  set(body "/* generated from ${header} by packaging/dfconsumer_symbols.cmake */\nDFCONSUMER_0 {\n  global:\n")
  foreach(n ${names})
    string(APPEND body "    ${n};\n")
  endforeach()
  string(APPEND body "  local:\n    *;\n};\n")
  file(WRITE "${out}.tmp" "${body}")
  configure_file("${out}.tmp" "${out}" COPYONLY) # rewritten (and relinked) only on change
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${header}")
endfunction()
