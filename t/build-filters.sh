#!/bin/sh
# Builds the test and example filters into $1 (default: build/filters):
# Rust-SDK filters for wasm32-wasi with Debian's Rust 1.63, which ships the
# wasm32 standard library (rustup cannot download targets here). Crates are
# vendored once by rustup's cargo (Debian's cargo 1.65 cannot read the
# sparse index) and the build itself runs offline.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../build/filters}
filters=$here/filters
rustup_cargo=${NGX_PROXY_WASM_CARGO:-$HOME/.cargo/bin/cargo}

mkdir -p "$out" "$filters/.cargo"
cd "$filters"

stamp=vendor/.lock-stamp
if ! cmp -s Cargo.lock "$stamp" 2>/dev/null; then
    "$rustup_cargo" vendor --locked --versioned-dirs vendor > .cargo/config.toml.new
    mv .cargo/config.toml.new .cargo/config.toml
    cp Cargo.lock "$stamp"
fi

PATH=/usr/bin:$PATH /usr/bin/cargo build --offline --locked --release \
    --target wasm32-wasi --target-dir "$filters/target"

for wasm in "$filters"/target/wasm32-wasi/release/*.wasm; do
    cmp -s "$wasm" "$out/$(basename "$wasm")" 2>/dev/null || cp "$wasm" "$out/"
done
