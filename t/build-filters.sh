#!/bin/sh
# Builds the test and example filters into $1 (default: build/filters):
# AssemblyScript-SDK filters with npm (t/filters-as), and
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

# AssemblyScript SDK filters: npm installs the compiler and the SDK once
# (by the lockfile), asc builds each filter when its source changes.
as=$here/filters-as
if ! cmp -s "$as/package-lock.json" "$as/node_modules/.lock-stamp" 2>/dev/null; then
    (cd "$as" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$as/package-lock.json" "$as/node_modules/.lock-stamp"
fi
if [ ! -f "$out/as_properties.wasm" ] \
    || [ "$as/assembly/index.ts" -nt "$out/as_properties.wasm" ]; then
    (cd "$as" && ./node_modules/.bin/asc assembly/index.ts \
        -b "$out/as_properties.wasm.tmp" --use abort=abort_proc_exit -O3)
    mv "$out/as_properties.wasm.tmp" "$out/as_properties.wasm"
fi
