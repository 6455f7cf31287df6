# Runs at install time (cmake --install, cpack), included by the install(CODE)
# rules of packaging/CMakeLists.txt: it writes the files whose contents name
# the install prefix, which is known only then (--prefix, CPack's /usr).
#   DF_WHAT pc | bridge, DF_SRC (packaging/), DF_EXAMPLE, DF_STAGE, DF_VERSION,
#   DF_BINDIR, DF_LIBDIR, DF_INCLUDEDIR, DF_DOCDIR (relative or absolute).
# The prefix /usr (the .deb) puts the system files where Debian has them
# (/etc, /lib/systemd/system); any other prefix keeps them under it
# (PREFIX/etc, PREFIX/lib/systemd/system: systemd reads /usr/local/lib/systemd/system).
set(prefix "${CMAKE_INSTALL_PREFIX}")
string(REGEX REPLACE "/+$" "" prefix "${prefix}")
if(prefix STREQUAL "/usr")
  set(etc "/etc")
  set(unitdir "/lib/systemd/system")
else()
  set(etc "${prefix}/etc")
  set(unitdir "${prefix}/lib/systemd/system")
endif()
macro(df_abs out rel)
  if(IS_ABSOLUTE "${rel}")
    set(${out} "${rel}")
  else()
    set(${out} "${prefix}/${rel}")
  endif()
endmacro()
string(MD5 stage_key "${prefix}|$ENV{DESTDIR}")
set(stage "${DF_STAGE}/${stage_key}")
file(MAKE_DIRECTORY "${stage}")

if(DF_WHAT STREQUAL "pc")
  set(DF_PC_PREFIX "${prefix}")
  set(DF_PC_VERSION "${DF_VERSION}")
  foreach(v LIBDIR INCLUDEDIR)
    if(IS_ABSOLUTE "${DF_${v}}")
      set(DF_PC_${v} "${DF_${v}}")
    else()
      set(DF_PC_${v} "\${prefix}/${DF_${v}}")
    endif()
  endforeach()
  configure_file("${DF_SRC}/dfconsumer.pc.in" "${stage}/dfconsumer.pc" @ONLY)
  df_abs(libdir "${DF_LIBDIR}")
  file(INSTALL DESTINATION "${libdir}/pkgconfig" TYPE FILE FILES "${stage}/dfconsumer.pc")
elseif(DF_WHAT STREQUAL "bridge")
  df_abs(bindir "${DF_BINDIR}")
  df_abs(DF_UNIT_DOCDIR "${DF_DOCDIR}")
  set(DF_UNIT_BINARY "${bindir}/dfbridge")
  set(DF_UNIT_CONFIG "${etc}/dfbridge/dfbridge.yaml")
  set(DF_UNIT_DEFAULTS "${etc}/default/dfbridge")
  configure_file("${DF_SRC}/dfbridge.service.in" "${stage}/dfbridge.service" @ONLY)
  file(INSTALL DESTINATION "${unitdir}" TYPE FILE FILES "${stage}/dfbridge.service")
  # The config: the example, with the journal in the unit's StateDirectory.
  file(READ "${DF_EXAMPLE}" yaml)
  set(commented "  # stateDir: /var/lib/dfbridge\n")
  string(FIND "${yaml}" "${commented}" at)
  if(at LESS 0)
    message(FATAL_ERROR "${DF_EXAMPLE}: no line \"# stateDir: /var/lib/dfbridge\" to enable")
  endif()
  string(REPLACE "${commented}" "  stateDir: /var/lib/dfbridge\n" yaml "${yaml}")
  file(WRITE "${stage}/dfbridge.yaml"
       "# Installed as ${DF_UNIT_CONFIG}: the example configuration with bridge.stateDir\n"
       "# set to the service's state directory. Edit bot, pod and agent, then run\n"
       "#   ${DF_UNIT_BINARY} --config ${DF_UNIT_CONFIG} --check\n"
       "# The service refuses to start (exit 2, no restart) until the bot key exists.\n"
       "${yaml}")
  file(INSTALL DESTINATION "${etc}/dfbridge" TYPE FILE FILES "${stage}/dfbridge.yaml")
  file(INSTALL DESTINATION "${etc}/default" TYPE FILE RENAME dfbridge
       FILES "${DF_SRC}/dfbridge.default")
else()
  message(FATAL_ERROR "install_configured.cmake: unknown DF_WHAT '${DF_WHAT}'")
endif()
file(REMOVE_RECURSE "${stage}")
