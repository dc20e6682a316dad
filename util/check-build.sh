# Sourced by ./config when nginx's ./configure runs: what the build needs,
# each missing piece stopped here with one line that says what to do,
# rather than deep in "make".

proxy_wasm_fail() {
    echo "$0: error: ngx_proxy_wasm: $*"
    exit 1
}

# "1.22.1" -> 1022001, for comparisons
proxy_wasm_version_number() {
    echo "$1" | awk -F. '{ printf "%d\n", $1 * 1000000 + $2 * 1000 + $3 }'
}

# nginx: the versions the module is tested with (README, "Supported nginx"):
# from the oldest release to the last one of a minor line
PROXY_WASM_NGINX_OLDEST=1.22.1
PROXY_WASM_NGINX_LAST_LINE=1.28

proxy_wasm_nginx=`sed -n 's/^#define NGINX_VERSION *"\(.*\)"$/\1/p' src/core/nginx.h 2>/dev/null`
proxy_wasm_n=`proxy_wasm_version_number "$proxy_wasm_nginx"`

if [ "${NGX_PROXY_WASM_NGINX_CHECK:-on}" != off ] && [ -n "$proxy_wasm_nginx" ] \
   && { [ "$proxy_wasm_n" -lt "`proxy_wasm_version_number $PROXY_WASM_NGINX_OLDEST`" ] \
        || [ "$proxy_wasm_n" -gt "`proxy_wasm_version_number $PROXY_WASM_NGINX_LAST_LINE.999`" ]; }
then
    proxy_wasm_fail "nginx $proxy_wasm_nginx is not supported (supported: $PROXY_WASM_NGINX_OLDEST to $PROXY_WASM_NGINX_LAST_LINE.x); set NGX_PROXY_WASM_NGINX_CHECK=off to build anyway"
fi

# cargo, and a Rust as new as Cargo.toml's rust-version
if ! (cd "$ngx_addon_dir" && command -v "$PROXY_WASM_CARGO") >/dev/null 2>&1; then
    proxy_wasm_fail "cargo not found (\"$PROXY_WASM_CARGO\"): install Rust with rustup, or set NGX_PROXY_WASM_CARGO to cargo's path"
fi

proxy_wasm_rust_min=`sed -n 's/^rust-version = "\(.*\)"$/\1/p' "$ngx_addon_dir/Cargo.toml"`
# (from the module's directory, where rustup applies rust-toolchain.toml)
if ! proxy_wasm_out=`cd "$ngx_addon_dir" && "$PROXY_WASM_CARGO" --version 2>&1`; then
    proxy_wasm_fail "\"$PROXY_WASM_CARGO --version\" failed (`echo "$proxy_wasm_out" | grep . | tail -n 1`): install the Rust release rust-toolchain.toml names (\"rustup toolchain install\" in the module's directory), or set NGX_PROXY_WASM_CARGO to another cargo"
fi
proxy_wasm_rust=`echo "$proxy_wasm_out" | awk '/^cargo / { print $2; exit }'`

if [ "`proxy_wasm_version_number ${proxy_wasm_rust%%-*}`" -lt \
     "`proxy_wasm_version_number $proxy_wasm_rust_min`" ]
then
    proxy_wasm_fail "Rust $proxy_wasm_rust_min or newer is needed, $PROXY_WASM_CARGO is $proxy_wasm_rust: run \"rustup update\", or set NGX_PROXY_WASM_CARGO to a newer cargo"
fi

# libclang, which bindgen loads to read the shim's header
if [ -n "${LIBCLANG_PATH:-}" ]; then
    if [ ! -f "$LIBCLANG_PATH" ] \
       && ! ls "$LIBCLANG_PATH"/libclang*.so* >/dev/null 2>&1
    then
        proxy_wasm_fail "no libclang.so in LIBCLANG_PATH ($LIBCLANG_PATH): point it at the directory that has it"
    fi
elif ! ls /usr/lib/llvm-*/lib/libclang*.so* /usr/lib64/llvm*/lib/libclang*.so* \
          /usr/lib/*-linux-gnu/libclang*.so* /usr/lib64/libclang*.so* \
          /usr/lib/libclang*.so* /usr/local/lib/libclang*.so* >/dev/null 2>&1 \
     && ! { /sbin/ldconfig -p 2>/dev/null | grep -q 'libclang[-.0-9]*\.so'; }
then
    proxy_wasm_fail "libclang not found (bindgen needs it): install libclang-dev (Debian, Ubuntu) or clang-devel (Fedora), or set LIBCLANG_PATH to its directory"
fi

# the Wasm compilers, as cargo features
proxy_wasm_features=
for proxy_wasm_compiler in $PROXY_WASM_COMPILERS; do
    case $proxy_wasm_compiler in
        cranelift|winch)
            proxy_wasm_features="$proxy_wasm_features $proxy_wasm_compiler" ;;
        *)
            proxy_wasm_fail "unknown compiler \"$proxy_wasm_compiler\" in NGX_PROXY_WASM_COMPILERS (\"$PROXY_WASM_COMPILERS\"): use \"cranelift\", \"winch\" or both" ;;
    esac
done

if [ -z "$proxy_wasm_features" ]; then
    proxy_wasm_fail "NGX_PROXY_WASM_COMPILERS is empty: use \"cranelift\", \"winch\" or both"
fi

PROXY_WASM_FEATURES=`echo $proxy_wasm_features | tr ' ' ','`

# The default (Cargo.toml's default features) is built as cargo's own
# commands build it, so that they share what cargo compiled.
if [ "$PROXY_WASM_FEATURES" = cranelift ]; then
    PROXY_WASM_CARGO_FEATURES=
else
    PROXY_WASM_CARGO_FEATURES="--no-default-features --features $PROXY_WASM_FEATURES"
fi

echo " + ngx_proxy_wasm: nginx $proxy_wasm_nginx, Rust $proxy_wasm_rust, compilers: $PROXY_WASM_FEATURES"
