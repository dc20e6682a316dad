#!/bin/sh
# Runs a command (default: prove on the whole suite) against one nginx
# build of util/nginx.sh:
#   util/test-env.sh 1.28.3|1.28.3-static|1.28.3-asan|debian|debian-wasm-first [command...]
# "debian" runs Debian's /usr/sbin/nginx 1.22.1 with the Lua module loaded
# before this module; "debian-wasm-first" loads this module first.
# "1.28.3-asan" runs the sanitizers' build: a report of AddressSanitizer or
# UndefinedBehaviorSanitizer from any nginx process fails the run.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
variant=${1:-1.28.3}
[ $# -gt 0 ] && shift

TEST_NGINX_FILTERS=$top/build/filters
TEST_NGINX_WAT=$top/t/wat
# resty.proxy_wasm, for lua_package_path
TEST_NGINX_LUA_LIB=$top/lib
TEST_NGINX_SERVROOT=$top/t/servroot/$variant
case $variant in
    1.28.3)
        TEST_NGINX_BINARY=$top/build/nginx-1.28.3/objs/nginx
        TEST_NGINX_LOAD_MODULES="$top/build/nginx-1.28.3/objs/ngx_proxy_wasm_module.so $top/build/nginx-1.28.3/objs/ngx_stream_proxy_wasm_module.so"
        ;;
    1.28.3-static)
        TEST_NGINX_BINARY=$top/build/nginx-1.28.3-static/objs/nginx
        TEST_NGINX_LOAD_MODULES=
        ;;
    1.28.3-asan)
        TEST_NGINX_BINARY=$top/build/nginx-1.28.3-asan/objs/nginx
        TEST_NGINX_LOAD_MODULES="$top/build/nginx-1.28.3-asan/objs/ngx_proxy_wasm_module.so $top/build/nginx-1.28.3-asan/objs/ngx_stream_proxy_wasm_module.so"
        reports=$TEST_NGINX_SERVROOT/sanitizer-reports
        rm -rf "$reports"
        mkdir -p "$reports"
        # workers run as another user when nginx starts as root
        chmod 1777 "$reports"
        # wasmtime turns faults in Wasm code into traps with its own SIGSEGV
        # handler, installed over ASan's; every dynamic module defines
        # ngx_modules and ngx_module_names (nginx finds them by name), which
        # ASan takes for an ODR violation; leaks are not looked for (what
        # lives until exit is reachable, and nginx's pools hide the rest)
        ASAN_OPTIONS="log_path=$reports/asan:allow_user_segv_handler=1:detect_odr_violation=0:detect_leaks=0"
        UBSAN_OPTIONS="log_path=$reports/ubsan:print_stacktrace=1"
        TEST_NGINX_SANITIZER_REPORTS=$reports
        # a sanitized nginx reloads about three times slower
        TEST_NGINX_SLOWDOWN=3
        export ASAN_OPTIONS UBSAN_OPTIONS TEST_NGINX_SANITIZER_REPORTS \
               TEST_NGINX_SLOWDOWN
        ;;
    debian|debian-wasm-first)
        lua="/usr/lib/nginx/modules/ndk_http_module.so /usr/lib/nginx/modules/ngx_http_lua_module.so"
        wasm=$top/build/nginx-debian/objs/ngx_proxy_wasm_module.so
        # network filters: Debian's stream module, then this one's
        stream="/usr/lib/nginx/modules/ngx_stream_module.so $top/build/nginx-debian/objs/ngx_stream_proxy_wasm_module.so"
        TEST_NGINX_BINARY=/usr/sbin/nginx
        if [ "$variant" = debian ]; then
            TEST_NGINX_LOAD_MODULES="$lua $wasm $stream"
        else
            TEST_NGINX_LOAD_MODULES="$wasm $stream $lua"
        fi
        TEST_NGINX_HAS_LUA=1
        export TEST_NGINX_HAS_LUA
        ;;
    *)
        echo "usage: $0 1.28.3|1.28.3-static|debian|debian-wasm-first [command...]" >&2
        exit 2
        ;;
esac
build=$top/build/nginx-${variant%-wasm-first}
TEST_NGINX_COMPILERS=$(cat "$build/.compilers" 2>/dev/null || echo cranelift)
export TEST_NGINX_BINARY TEST_NGINX_LOAD_MODULES TEST_NGINX_FILTERS \
       TEST_NGINX_LUA_LIB TEST_NGINX_WAT TEST_NGINX_SERVROOT TEST_NGINX_COMPILERS

cd "$top"
[ $# -eq 0 ] && set -- prove -It/lib -r t/
if [ -z "${reports:-}" ]; then
    exec "$@"
fi

status=0
"$@" || status=$?
if [ -n "$(find "$reports" -type f)" ]; then
    echo "sanitizer reports ($reports): see the failed tests" >&2
    exit 1
fi
echo "sanitizers: no report"
exit $status
