# Appends to nginx's Makefile: cargo runs at every "make" (it does nothing
# when nothing changed), and the module is relinked only when the library
# changed.

cat << END                                                    >> $NGX_MAKEFILE

$PROXY_WASM_LIB: proxy_wasm_force
	cd $ngx_addon_dir && CARGO_TARGET_DIR=$PROXY_WASM_TARGET_DIR \\
		$PROXY_WASM_CARGO build --profile nginx --lib $PROXY_WASM_CARGO_FEATURES
	mkdir -p \`dirname $PROXY_WASM_LIB\`
	cmp -s $PROXY_WASM_CARGO_LIB $PROXY_WASM_LIB \\
		|| cp $PROXY_WASM_CARGO_LIB $PROXY_WASM_LIB

proxy_wasm_force:

.PHONY: proxy_wasm_force

$PROXY_WASM_TARGET: $PROXY_WASM_LIB

END

# What the library is linked into (the dynamic module, or nginx itself
# with --add-module) is stripped once linked: its debug information (mostly
# wasmtime's line tables) goes to a .debug file beside it, which debuggers
# find through its debug link. The .debug file is touched last, so that it
# is newer than the stripped file and not made again from it.
if [ "$PROXY_WASM_DYNAMIC" = yes ]; then
    proxy_wasm_goal=modules
else
    proxy_wasm_goal=binary
fi

if [ "${NGX_PROXY_WASM_DEBUG_INFO:-split}" = split ]; then

cat << END                                                    >> $NGX_MAKEFILE

$proxy_wasm_goal: $PROXY_WASM_TARGET.debug

$PROXY_WASM_TARGET.debug: $PROXY_WASM_TARGET
	objcopy --only-keep-debug $PROXY_WASM_TARGET $PROXY_WASM_TARGET.debug
	objcopy --strip-unneeded --remove-section=.comment \\
		--add-gnu-debuglink=$PROXY_WASM_TARGET.debug $PROXY_WASM_TARGET
	touch $PROXY_WASM_TARGET.debug

END

fi
