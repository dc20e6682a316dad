#!/bin/sh
# Installs what building and testing need on Debian 12, if anything is
# missing: the C toolchain and nginx's libraries, libclang (bindgen),
# Debian's nginx 1.22.1 with its Lua module and headers, Debian's Rust 1.63
# with the wasm32 standard library and its linker (test filters),
# Test::Base (test harness), curl, wrk, Python and valgrind (benchmarks),
# python3-grpcio and python3-h2 (the gRPC tests' servers), Debian's nginx
# stream module and redis-server (the network filters' tests),
# npm (AssemblyScript test filters), debhelper (make deb); and with rustup
# the Rust release of rust-toolchain.toml (the library).
set -eu

packages="gcc make libc6-dev libclang-dev libpcre2-dev zlib1g-dev libssl-dev \
    nginx-dev libnginx-mod-http-lua libnginx-mod-stream redis-server libtest-base-perl rustc cargo python3-grpcio python3-h2 \
    libstd-rust-dev-wasm32 lld-14 curl wrk python3 valgrind procps util-linux \
    debhelper dpkg-dev fakeroot binutils"

missing=
for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" \
        || missing="$missing $p"
done

if [ -n "$missing" ]; then
    sudo=
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    echo "installing:$missing"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing
fi

# npm builds the AssemblyScript test filters: Debian's unless the machine
# has its own Node.js
if ! command -v npm >/dev/null 2>&1; then
    sudo=
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    echo "installing: nodejs npm"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends nodejs npm
fi

# rustup's cargo runs the release rust-toolchain.toml names: install it
cargo=${NGX_PROXY_WASM_CARGO:-$HOME/.cargo/bin/cargo}
rustup=$(dirname "$cargo")/rustup
if [ -x "$rustup" ]; then
    (cd "$(dirname "$0")/.." && "$rustup" toolchain install >/dev/null)
fi
if ! (cd "$(dirname "$0")/.." && "$cargo" --version) >/dev/null 2>&1; then
    echo "error: the Rust library needs rustup's cargo at $cargo;" >&2
    echo "set NGX_PROXY_WASM_CARGO to another one" >&2
    exit 1
fi
