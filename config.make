# Appends to nginx's Makefile: cargo runs at every "make" (it does nothing
# when nothing changed), and the module is relinked only when the library
# changed.

cat << END                                                    >> $NGX_MAKEFILE

$PROXY_WASM_LIB: proxy_wasm_force
	cd $ngx_addon_dir && CARGO_TARGET_DIR=$PROXY_WASM_TARGET_DIR \\
		$PROXY_WASM_CARGO build --release --lib

proxy_wasm_force:

.PHONY: proxy_wasm_force

$PROXY_WASM_TARGET: $PROXY_WASM_LIB

END
