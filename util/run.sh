#!/bin/sh
# Starts nginx 1.28.3 with ngx_proxy_wasm and the example filter
# (examples/nginx.conf) on 127.0.0.1; "util/run.sh stop" stops it.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
prefix=$top/build/run
port=${PORT:-8080}
backend=${BACKEND_PORT:-8081}
nginx=$top/build/nginx-1.28.3/objs/nginx

if [ -f "$prefix/logs/nginx.pid" ]; then
    "$nginx" -p "$prefix" -c conf/nginx.conf -s quit 2>/dev/null || true
    sleep 0.5
fi
[ "${1:-}" = stop ] && exit 0

mkdir -p "$prefix/conf" "$prefix/logs"
sed -e "s|@MODULE@|$top/build/nginx-1.28.3/objs/ngx_proxy_wasm_module.so|" \
    -e "s|@FILTERS@|$top/build/filters|" \
    -e "s|@PREFIX@|$prefix|g" \
    -e "s|@PORT@|$port|g" \
    -e "s|@BACKEND_PORT@|$backend|g" \
    "$top/examples/nginx.conf" > "$prefix/conf/nginx.conf"

"$nginx" -p "$prefix" -c conf/nginx.conf

cat <<END

nginx $("$nginx" -v 2>&1 | sed 's|.*/||') runs with ngx_proxy_wasm on 127.0.0.1:$port
(configuration: $prefix/conf/nginx.conf, log: $prefix/logs/error.log).

  curl -i http://127.0.0.1:$port/hello    # answered by the filter itself
  curl -i http://127.0.0.1:$port/         # proxied; the filter adds x-hello
  curl -i http://127.0.0.1:$port/other    # another filter configuration

Stop it with: make stop
END
