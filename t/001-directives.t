# The wasm{} block and proxy_wasm: what loads, and how a bad configuration
# fails: one [emerg] line naming the cause, the file and the line.
use Test::Nginx::Socket 'no_plan';
run_tests();

__DATA__

=== TEST 1: a .wasm module and a filter of it
--- main_config
    wasm {
        module hello $TEST_NGINX_FILTERS/hello.wasm;
    }
--- config
    location /hello {
        proxy_wasm hello "Hi";
        empty_gif;
    }
--- request
GET /hello
--- error_code: 200
--- response_body
Hi
--- no_error_log
[error]
[warn]



=== TEST 2: a .wat module (text format) runs like a binary one
--- main_config
    wasm {
        module abi020 $TEST_NGINX_WAT/abi_0_2_0.wat;
    }
--- config
    location / {
        proxy_wasm abi020;
        return 200 "ok\n";
    }
--- request
GET /
--- response_body
ok
--- response_headers
x-abi: 0.2.0
--- no_error_log
[error]



=== TEST 3: module paths are relative to the prefix
--- main_config
    wasm {
        module hello html/hello.wasm;
    }
--- config
    location /hello {
        proxy_wasm hello;
        empty_gif;
    }
--- request
GET /hello
--- skip_eval: system("cp $ENV{TEST_NGINX_FILTERS}/hello.wasm $ENV{TEST_NGINX_SERVROOT}/html/") != 0
--- response_body
Hello from Proxy-Wasm



=== TEST 4: unknown module
--- main_config
    wasm {
        module hello $TEST_NGINX_FILTERS/hello.wasm;
    }
--- config
    location / {
        proxy_wasm nope;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*unknown module "nope" in \S+nginx\.conf:\d+$/m



=== TEST 5: proxy_wasm without a wasm{} block
--- config
    location / {
        proxy_wasm hello;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*no wasm\{\} block is defined before http\{\}: module "hello" is unknown in \S+nginx\.conf:\d+$/m



=== TEST 6: unreadable module file
--- main_config
    wasm {
        module m /nonexistent/filter.wasm;
    }
--- must_die
--- error_log eval
qr{\[emerg\] .*wasm module "m": cannot read "/nonexistent/filter\.wasm": No such file or directory \(os error 2\) in \S+nginx\.conf:\d+$}m



=== TEST 7: a file that is not Wasm
--- main_config
    wasm {
        module m $TEST_NGINX_HTML_DIR/garbage.wasm;
    }
--- user_files
>>> garbage.wasm
this is not a wasm module
--- must_die
--- error_log eval
qr/\[emerg\] .*wasm module "m": invalid module "\S+garbage\.wasm": .* in \S+nginx\.conf:\d+$/m



=== TEST 8: a Wasm module that is not a Proxy-Wasm filter
--- main_config
    wasm {
        module m $TEST_NGINX_WAT/no_abi.wat;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*wasm module "m": not a Proxy-Wasm module: no proxy_abi_version_0_2_1, proxy_abi_version_0_2_0 or proxy_abi_version_0_1_0 export in \S+nginx\.conf:\d+$/m



=== TEST 9: a callback export of the wrong type
--- main_config
    wasm {
        module m $TEST_NGINX_WAT/bad_signature.wat;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*wasm module "m": export "proxy_on_request_headers" is a function \(i32, i32\) -> \(i32\), expected a function \(i32, i32, i32\) -> \(i32\) for Proxy-Wasm ABI 0\.2\.1 in \S+nginx\.conf:\d+$/m



=== TEST 10: a module importing a function no host provides
--- main_config
    wasm {
        module m $TEST_NGINX_WAT/unknown_import.wat;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*wasm module "m": cannot link module "\S+unknown_import\.wat": .*proxy_frobnicate.* in \S+nginx\.conf:\d+$/m



=== TEST 11: of modules compiled together, the first that fails is named with its line
--- main_config
    wasm {
        module a $TEST_NGINX_FILTERS/hello.wasm;
        module b $TEST_NGINX_FILTERS/testbed.wasm;
        module c $TEST_NGINX_WAT/bad_signature.wat;
        module d $TEST_NGINX_WAT/unknown_import.wat;
        module e $TEST_NGINX_FILTERS/hello.wasm;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*wasm module "c": export "proxy_on_request_headers" is a function .* in \S+nginx\.conf:\d+$/m
--- no_error_log
wasm module "d"



=== TEST 12: a module without proxy_on_context_create
--- main_config
    wasm {
        module m $TEST_NGINX_WAT/no_context_create.wat;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*wasm module "m": no "proxy_on_context_create" export: contexts cannot be created in \S+nginx\.conf:\d+$/m



=== TEST 13: on_vm_start returns false
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm "vm_start fail";
    }
--- config
    location / {
        proxy_wasm testbed;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*filter "testbed" failed to start: on_vm_start returned false in \S+nginx\.conf:\d+$/m



=== TEST 14: on_configure returns false
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
    }
--- config
    location / {
        proxy_wasm testbed "configure log error bad%20configuration; configure fail";
    }
--- must_die
--- error_log eval
[qr/\[emerg\] .*filter "testbed" failed to start: on_configure returned false in \S+nginx\.conf:\d+$/m,
qr/\[error\] .*proxy_wasm "testbed" #1: bad configuration/]



=== TEST 15: the module's start function traps
--- main_config
    wasm {
        module m $TEST_NGINX_WAT/start_traps.wat;
    }
--- config
    location / {
        proxy_wasm m;
    }
--- must_die
--- error_log eval
[qr/\[emerg\] .*module "m" failed to start: _initialize failed: wasm trap: wasm `unreachable` instruction executed in \S+nginx\.conf:\d+$/m,
qr/\[error\] .*proxy_wasm "m": _initialize failed: wasm trap: wasm `unreachable` instruction executed/]



=== TEST 16: duplicate module names
--- main_config
    wasm {
        module m $TEST_NGINX_WAT/abi_0_2_0.wat;
        module m $TEST_NGINX_WAT/abi_0_2_0.wat;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*duplicate module name "m" in \S+nginx\.conf:\d+$/m



=== TEST 17: invalid module names
--- main_config
    wasm {
        module "a b" $TEST_NGINX_WAT/abi_0_2_0.wat;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid module name "a b": use letters, digits, "_", "-" and "\." in \S+nginx\.conf:\d+$/m



=== TEST 18: two wasm{} blocks
--- main_config
    wasm {
    }
    wasm {
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"wasm" directive is duplicate in \S+nginx\.conf:\d+$/m



=== TEST 19: unknown directive in wasm{}
--- main_config
    wasm {
        frobnicate on;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*unknown directive "frobnicate" in \S+nginx\.conf:\d+$/m



=== TEST 20: module outside wasm{}
--- main_config
    module m $TEST_NGINX_WAT/abi_0_2_0.wat;
--- must_die
--- error_log eval
qr/\[emerg\] .*"module" directive is not allowed here in \S+nginx\.conf:\d+$/m



=== TEST 21: compiler and backtraces
--- skip_eval: ($ENV{TEST_NGINX_COMPILERS} // '') !~ /winch/
--- main_config
    wasm {
        compiler winch;
        backtraces on;
        module hostile $TEST_NGINX_WAT/hostile.wat;
    }
--- config
    location / {
        proxy_wasm hostile "u";
        empty_gif;
    }
--- request
GET /
--- error_code: 500
--- error_log eval
qr/proxy_on_request_headers failed: wasm trap: wasm `unreachable` instruction executed\nwasm backtrace:\n  #0 hostile!<wasm function \d+> at offset 0x[0-9a-f]+, client: /



=== TEST 22: a compiler this build does not have
--- skip_eval: ($ENV{TEST_NGINX_COMPILERS} // 'winch') =~ /winch/
--- main_config
    wasm {
        compiler winch;
        module hostile $TEST_NGINX_WAT/hostile.wat;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*cannot start the wasm runtime: the compiler "winch" is not in this build of the module \(it has: cranelift\); rebuild the module with NGX_PROXY_WASM_COMPILERS="winch" in \S+nginx\.conf:\d+$/m



=== TEST 23: an invalid compiler
--- main_config
    wasm {
        compiler fast;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid value "fast" in "compiler" directive, it must be "auto", "cranelift" or "winch" in \S+nginx\.conf:\d+$/m



=== TEST 24: the wasm{} block after http{}
--- http_config
    proxy_wasm hello;
--- main_config
--- must_die
--- error_log eval
qr/\[emerg\] .*no wasm\{\} block is defined before http\{\}/



=== TEST 25: a wasm{} block without modules, and no proxy_wasm
--- main_config
    wasm {
    }
--- config
    location / {
        return 200 "plain\n";
    }
--- request
GET /
--- response_body
plain
--- no_error_log
[error]



=== TEST 26: the VM configuration reaches on_vm_start
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm "vm_start config";
    }
--- config
    location / {
        proxy_wasm testbed "configure config";
        return 200;
    }
--- request
GET /
--- error_log
vm configuration: vm_start config, plugin configuration: (none)
vm configuration: vm_start config, plugin configuration: configure config



=== TEST 27: the start-up notice names the module's and the runtime's versions
--- main_config
    wasm {
        module hello $TEST_NGINX_FILTERS/hello.wasm;
    }
--- config
    location / {
        return 200;
    }
--- request
GET /
--- error_log eval
do {
    local $/;
    open my $manifest, '<', 'Cargo.toml' or die "Cargo.toml: $!";
    my ($version) = <$manifest> =~ /^version = "([^"]+)"/m;
    open my $lock, '<', 'Cargo.lock' or die "Cargo.lock: $!";
    my ($wasmtime) = <$lock> =~ /^name = "wasmtime"\nversion = "([^"]+)"/m;
    qr/\[notice\] \d+#\d+: \Qngx_proxy_wasm $version, wasmtime $wasmtime\E$/m
}
