#!/bin/sh
# make deb: builds the Debian package libnginx-mod-http-proxy-wasm for
# Debian 12's nginx (nginx-dev) into build/deb/, with its -dbgsym package.
# The package is made from the files git tracks (and the example filter of
# "make filters"), in build/deb/ngx-proxy-wasm-<version>/, by
# dpkg-buildpackage with packaging/debian/.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
out=$top/build/deb
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$top/Cargo.toml" | head -n 1)
tree=$out/ngx-proxy-wasm-$version

rm -rf "$tree"
mkdir -p "$tree"
(cd "$top" && git ls-files -z --cached --others --exclude-standard \
    | grep -zv '^t/\|^bench/' | xargs -0 tar -cf - ) | tar -xf - -C "$tree"
cp -R "$top/packaging/debian" "$tree/debian"

# the example: the README's filter, its source, and a configuration
mkdir -p "$tree/debian/examples"
cp "$top/build/filters/hello.wasm" "$tree/debian/examples/"
cp "$top/t/filters/hello/src/lib.rs" "$tree/debian/examples/hello.rs"
cp "$top/packaging/nginx-example.conf" "$tree/debian/examples/nginx.conf"
chmod 644 "$tree/debian/examples/"*

# who builds it: DEBFULLNAME and DEBEMAIL, as Debian's tools take them
maintainer="${DEBFULLNAME:-ngx_proxy_wasm developers} <${DEBEMAIL:-ngx-proxy-wasm@localhost}>"
sed -i "s|^Maintainer: .*|Maintainer: $maintainer|" "$tree/debian/control"

# the package's version is the library's
cat > "$tree/debian/changelog" <<END
ngx-proxy-wasm ($version-1) bookworm; urgency=medium

  * ngx_proxy_wasm $version.

 -- $maintainer  $(date -R)
END

export NGX_PROXY_WASM_CARGO_TARGET_DIR=$top/build/cargo
export NGX_PROXY_WASM_COMPILERS="${NGX_PROXY_WASM_COMPILERS:-cranelift}"
(cd "$tree" && dpkg-buildpackage -b -us -uc)

ls -l "$out"/*.deb
