#!/bin/sh
# Builds nginx with ngx_proxy_wasm, out of the source trees it uses:
#   util/nginx.sh 1.28.3          nginx 1.28.3 (nginx-src crate) configured as
#                                 nginx.org's packages are (no --with-debug,
#                                 -O2, --with-compat, hardening flags) with
#                                 warnings as errors; dynamic module
#   util/nginx.sh 1.28.3-static   the same, module linked in (--add-module)
#   util/nginx.sh 1.28.3-asan     a debug build (--with-debug), nginx and the
#                                 C shim with AddressSanitizer and
#                                 UndefinedBehaviorSanitizer (the Rust library
#                                 as it is); both compilers
#   util/nginx.sh debian          the module for Debian's nginx 1.22.1
#                                 (nginx-dev, configured with its conf_flags,
#                                 which have --with-debug); both compilers
# into build/nginx-<variant>/. The source is copied first: nothing is written
# into the cargo registry or /usr/share/nginx/src. The Rust library is built
# once into build/cargo and shared by every variant.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
variant=${1:-1.28.3}
dir=$top/build/nginx-$variant

export NGX_PROXY_WASM_CARGO=${NGX_PROXY_WASM_CARGO:-$HOME/.cargo/bin/cargo}
export NGX_PROXY_WASM_CARGO_TARGET_DIR=$top/build/cargo

modules="--with-threads --with-http_ssl_module \
    --with-http_v2_module --with-http_auth_request_module \
    --with-http_addition_module --with-http_sub_module \
    --with-http_gunzip_module --with-http_realip_module \
    --with-http_stub_status_module --with-stream --with-stream_ssl_module \
    --with-stream_ssl_preread_module --with-stream_realip_module"

# nginx.org's packages' flags (nginx -V there), and -Werror
release="--with-compat $modules \
    --with-cc-opt='-g -O2 -fstack-protector-strong -Wformat -Werror=format-security -Wp,-D_FORTIFY_SOURCE=2 -fPIC -Werror' \
    --with-ld-opt='-Wl,-z,relro -Wl,-z,now -Wl,--as-needed -pie'"

nginx_src() {
    "$NGX_PROXY_WASM_CARGO" metadata --format-version 1 --locked \
        --manifest-path "$top/util/nginx-src/Cargo.toml" \
    | perl -MJSON::PP -0ne '
        for my $p (@{decode_json($_)->{packages}}) {
            if ($p->{name} eq "nginx-src") {
                (my $d = $p->{manifest_path}) =~ s{/Cargo\.toml$}{/nginx};
                print $d; exit;
            }
        }
        exit 1'
}

# the default compiler only, as users build it, unless a variant says
compilers=cranelift

case $variant in
    1.28.3)
        src=$(nginx_src)
        args="$release --add-dynamic-module=$top"
        ;;
    1.28.3-static)
        src=$(nginx_src)
        args="$release --add-module=$top"
        ;;
    1.28.3-asan)
        src=$(nginx_src)
        # nginx passes NULL with a 0 length to memcpy() (ngx_cpymem), and
        # its HTTP/2 code reads and writes integers unaligned where the CPU
        # allows (NGX_HAVE_NONALIGNED): both on purpose, neither this
        # module's
        sanitize="-fsanitize=address,undefined -fno-sanitize=nonnull-attribute,alignment -fno-omit-frame-pointer"
        args="--with-debug $modules --with-cc-opt='-g $sanitize -O1' \
              --with-ld-opt='$sanitize' --add-dynamic-module=$top"
        compilers="cranelift winch"
        ;;
    debian)
        src=/usr/share/nginx/src
        # shellcheck disable=SC1091
        args=$(bash -c ". $src/conf_flags; printf '%q ' \"\${NGX_CONF_FLAGS[@]}\"")
        # Debian builds its stream module (libnginx-mod-stream) with these
        args="$args --with-stream=dynamic --with-stream_ssl_module \
              --with-stream_ssl_preread_module \
              --with-cc-opt=-fPIC --with-ld-opt=-fPIC --add-dynamic-module=$top"
        compilers="cranelift winch"
        ;;
    *)
        echo "usage: $0 1.28.3|1.28.3-static|1.28.3-asan|debian" >&2
        exit 2
        ;;
esac

export NGX_PROXY_WASM_COMPILERS="$compilers"

# reconfigure when the arguments or the module's build scripts change
stamp="$args $compilers $(cat "$top/config" "$top/config.make" "$top/util/check-build.sh" | cksum)"

if [ ! -f "$dir/.configured" ] || [ "$(cat "$dir/.configured")" != "$stamp" ]; then
    rm -rf "$dir"
    mkdir -p "$dir"
    cp -R "$src/." "$dir/"
    chmod -R u+w "$dir"
    configure=./configure
    [ -x "$dir/configure" ] || configure=./auto/configure
    (cd "$dir" && eval "$configure $args")
    echo "$stamp" > "$dir/.configured"
    # the tests read what the build has
    echo "$compilers" > "$dir/.compilers"
fi

if [ "$variant" = debian ]; then
    # this project's modules only: nginx-dev has the stream module's headers,
    # not its sources (Debian's is in libnginx-mod-stream)
    targets="objs/ngx_proxy_wasm_module.so objs/ngx_stream_proxy_wasm_module.so"
    if grep -q '^objs/ngx_proxy_wasm_module.so.debug:' "$dir/objs/Makefile"; then
        targets="$targets objs/ngx_proxy_wasm_module.so.debug"
    fi
    make -C "$dir" -f objs/Makefile -j2 $targets
else
    make -C "$dir" -j2
fi
