# Every external library tracegate links, as imported targets. Debian package names are
# in scripts/install-deps.sh.
find_package(Threads REQUIRED)
find_package(Boost 1.74 REQUIRED)
find_package(OpenSSL 3 REQUIRED)
find_package(absl REQUIRED)
find_package(fmt REQUIRED)
find_package(spdlog REQUIRED)
find_package(yaml-cpp REQUIRED)
find_package(prometheus-cpp REQUIRED)
find_package(GTest REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(LIBPQ REQUIRED IMPORTED_TARGET libpq)

# Boost.Asio/Beast are header-only here; keep one interface target for them.
add_library(tracegate_asio INTERFACE)
target_link_libraries(tracegate_asio INTERFACE Boost::headers Threads::Threads OpenSSL::SSL
                                               OpenSSL::Crypto)
target_compile_definitions(tracegate_asio INTERFACE BOOST_ASIO_NO_DEPRECATED
                                                    BOOST_ASIO_DISABLE_BOOST_COROUTINE)

# Control plane, identity and state (issue 3); masking (issue 5).
find_package(SQLite3 REQUIRED)
find_package(CURL REQUIRED)
find_package(nlohmann_json 3 REQUIRED)
pkg_check_modules(HYPERSCAN REQUIRED IMPORTED_TARGET libhs)
find_package(simdjson REQUIRED)

# Statement gate (issue 4): libpg_query (static; it bundles the protobuf-c runtime) and
# protobuf-c's headers for its parse tree (pg_query/pg_query.pb-c.h).
find_library(PG_QUERY_LIBRARY NAMES libpg_query.a pg_query REQUIRED)
find_path(PROTOBUF_C_INCLUDE_DIR protobuf-c/protobuf-c.h REQUIRED)
add_library(tracegate_pg_query INTERFACE)
target_link_libraries(tracegate_pg_query INTERFACE ${PG_QUERY_LIBRARY})
target_include_directories(tracegate_pg_query INTERFACE ${PROTOBUF_C_INCLUDE_DIR})
