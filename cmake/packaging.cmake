# The Debian package: what `cpack -G DEB` in a configured build directory puts in
# imagegate_<version>_<arch>.deb, and the man page it ships (deploy/README.md).

# A sanitizer build is a test build: its binary needs the sanitizer runtimes and its --help
# (which the man page is made from) would run instrumented at build time.
if(CMAKE_CXX_FLAGS MATCHES "-fsanitize=" OR NOT TARGET imagegate)
  return()
endif()

# imagegate(8), written from the built binary's --help at build time, so it cannot drift from
# the flags the binary accepts.
set(IMAGEGATE_MAN_PAGE ${PROJECT_BINARY_DIR}/imagegate.8.gz)
add_custom_command(
  OUTPUT ${IMAGEGATE_MAN_PAGE}
  COMMAND sh ${PROJECT_SOURCE_DIR}/deploy/man/imagegate-man.sh $<TARGET_FILE:imagegate>
          ${PROJECT_VERSION} ${IMAGEGATE_MAN_PAGE}
  DEPENDS imagegate ${PROJECT_SOURCE_DIR}/deploy/man/imagegate-man.sh
  COMMENT "Writing the imagegate(8) man page from imagegate --help"
  VERBATIM)
add_custom_target(imagegate_man ALL DEPENDS ${IMAGEGATE_MAN_PAGE})

# Everything below goes into the package as component `package`; the binary's own install()
# rule (top-level CMakeLists.txt) is component `Unspecified`. Only these two are packaged, so
# nothing else a subdirectory might install (the emulator, test tools) can slip in.
# Absolute destinations: these paths are fixed by Debian and by the unit file, whatever the
# prefix.
set(IMAGEGATE_DOC_DIR share/doc/imagegate)
install(FILES ${IMAGEGATE_MAN_PAGE} DESTINATION share/man/man8 COMPONENT package)
install(FILES deploy/imagegate.example.toml DESTINATION /etc/imagegate RENAME imagegate.toml
        PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ COMPONENT package)
install(FILES deploy/systemd/imagegate.service DESTINATION /lib/systemd/system
        COMPONENT package)
install(FILES README.md deploy/debian/copyright deploy/imagegate.example.toml
        DESTINATION ${IMAGEGATE_DOC_DIR} COMPONENT package)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME imagegate)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_COMPONENTS_ALL Unspecified package)
# One package holding both components (not one package per component).
set(CPACK_DEB_COMPONENT_INSTALL OFF)
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "caching gateway for the Cloudflare Images API")
# The long description (CPack puts the summary above it and indents it for the control file).
string(CONCAT CPACK_PACKAGE_DESCRIPTION
       "imagegate answers the Cloudflare Images image-details endpoint from a\n"
       "byte-bounded in-memory cache and keeps one API token's calls under its\n"
       "rate limit (single-flight, stale answers instead of errors, an upstream\n"
       "budget). Clients and official SDKs use it by changing their base URL.")
set(IMAGEGATE_PACKAGE_MAINTAINER "imagegate maintainers <maintainers@imagegate.invalid>"
    CACHE STRING "Maintainer field of the Debian package")
set(CPACK_DEBIAN_PACKAGE_MAINTAINER ${IMAGEGATE_PACKAGE_MAINTAINER})
set(CPACK_DEBIAN_PACKAGE_SECTION web)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
# Library dependencies come from what the binary links (dpkg-shlibdeps, package dpkg-dev);
# adduser runs in postinst/postrm, and the system CA store verifies api.cloudflare.com.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser, ca-certificates")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/deploy/debian/conffiles ${PROJECT_SOURCE_DIR}/deploy/debian/postinst
    ${PROJECT_SOURCE_DIR}/deploy/debian/prerm ${PROJECT_SOURCE_DIR}/deploy/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
