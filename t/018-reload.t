# nginx -s reload under load: new filters (changed configuration or
# changed .wasm files) for new requests, old workers finishing theirs on
# the old ones, no failed request; ticks move to the new workers; the
# compiled-code cache spares the recompilation.
use Test::Nginx::Socket 'no_plan';
use File::Copy ();
use ProxyWasmTest;

default_modules(testbed => '$TEST_NGINX_FILTERS/testbed.wasm');

run_tests();

__DATA__

=== TEST 1: a changed plugin configuration, for new requests; the ticks follow
--- config
    location / {
        proxy_wasm testbed "configure tick_period 50; tick log info ticked%20old; response_headers add_header response x-version 1";
        empty_gif;
    }
--- reload_config
    location / {
        proxy_wasm testbed "configure tick_period 50; tick log info ticked%20new; response_headers add_header response x-version 2";
        empty_gif;
    }
--- request
GET /
--- reload_response_like eval
[qr/x-version: 1/, qr/x-version: 2/]
--- error_log eval
[qr/ticked old/, qr/ticked new/, qr/\[notice\] .*exiting/]



=== TEST 2: a changed .wasm file
--- main_config
    wasm {
        module filter $TEST_NGINX_HTML_DIR/filter.wasm;
    }
--- init
File::Copy::copy("$ENV{TEST_NGINX_FILTERS}/testbed.wasm", "$ENV{TEST_NGINX_HTML_DIR}/filter.wasm") or die $!;
--- config
    location / {
        proxy_wasm filter "response_headers add_header response x-version 1";
        empty_gif;
    }
--- reload_init
File::Copy::copy("$ENV{TEST_NGINX_FILTERS}/hello.wasm", "$ENV{TEST_NGINX_HTML_DIR}/filter.wasm.new") or die $!;
rename("$ENV{TEST_NGINX_HTML_DIR}/filter.wasm.new", "$ENV{TEST_NGINX_HTML_DIR}/filter.wasm") or die $!;
--- reload_config
    location / {
        proxy_wasm filter;
        empty_gif;
    }
--- request
GET /
--- reload_response_like eval
[qr/x-version: 1/, qr/x-powered-by: ngx_proxy_wasm/]



=== TEST 3: a request in flight finishes on the old filter
--- config
    location / {
        proxy_wasm testbed "response_headers add_header response x-version 1";
        empty_gif;
    }
    location /slow {
        proxy_wasm testbed "request_headers pause; request_headers remember; request_headers tick_period 1000; tick continue_remembered request; response_headers add_header response x-version 1";
        empty_gif;
    }
--- reload_config
    location / {
        proxy_wasm testbed "response_headers add_header response x-version 2";
        empty_gif;
    }
--- request
GET /
--- reload_inflight
GET /slow
--- reload_response_like eval
[qr/x-version: 1/, qr/x-version: 2/]



=== TEST 4: a failed reload (a filter that fails to start) keeps the running configuration
--- config
    location / {
        proxy_wasm testbed "response_headers add_header response x-version 1";
        empty_gif;
    }
--- reload_config
    location / {
        proxy_wasm testbed "configure fail";
        empty_gif;
    }
--- request
GET /
--- reload_response_like eval
[qr/x-version: 1/, qr/x-version: 1/]
--- error_log eval
qr/\[emerg\] .*filter "testbed" failed to start: on_configure returned false in .*nginx.conf:\d+/



=== TEST 5: with the cache, a reload loads the compiled code instead of compiling
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        cache logs/cache;
    }
--- config
    location / {
        proxy_wasm testbed "response_headers add_header response x-version 1";
        empty_gif;
    }
--- reload_config
    location / {
        proxy_wasm testbed "response_headers add_header response x-version 2";
        empty_gif;
    }
--- request
GET /
--- reload_response_like eval
[qr/x-version: 1/, qr/x-version: 2/]
--- error_log eval
qr/\[debug\] .*proxy_wasm "testbed": loaded from the cache/
--- no_error_log eval
qr/\[debug\] .*proxy_wasm "testbed": compiled/



=== TEST 6: with "cache off", the reload compiles
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        cache off;
    }
--- config
    location / {
        proxy_wasm testbed "response_headers add_header response x-version 1";
        empty_gif;
    }
--- reload_config
    location / {
        proxy_wasm testbed "response_headers add_header response x-version 2";
        empty_gif;
    }
--- request
GET /
--- reload_response_like eval
[qr/x-version: 1/, qr/x-version: 2/]
--- error_log eval
qr/\[debug\] .*proxy_wasm "testbed": compiled/
--- no_error_log eval
qr/\[debug\] .*proxy_wasm "testbed": loaded from the cache/



=== TEST 7: an unusable cache directory: a warning, and the module is compiled
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        cache /proc/version/cache;
    }
--- config
    location / {
        proxy_wasm testbed "response_headers add_header response x-version 1";
        empty_gif;
    }
--- request
GET /
--- response_headers
x-version: 1
--- error_log eval
qr/\[warn\] .*proxy_wasm "testbed": cannot write to the cache "\/proc\/version\/cache"/



=== TEST 8: the cache is on by default, in proxy_wasm_cache under the prefix, readable by its owner only
--- init
File::Path::remove_tree("$ENV{TEST_NGINX_SERVROOT}/proxy_wasm_cache");
--- reload_init
my $dir = "$ENV{TEST_NGINX_SERVROOT}/proxy_wasm_cache";
my $mode = (stat $dir)[2] & 07777;
die sprintf("the cache directory's mode is %o", $mode) unless $mode == 0700;
my @files = glob("$dir/*.cwasm");
die "the cache holds @files" unless @files == 1;
--- config
    location / {
        proxy_wasm testbed "response_headers add_header response x-version 1";
        empty_gif;
    }
--- reload_config
    location / {
        proxy_wasm testbed "response_headers add_header response x-version 2";
        empty_gif;
    }
--- request
GET /
--- reload_response_like eval
[qr/x-version: 1/, qr/x-version: 2/]
--- error_log eval
qr/\[debug\] .*proxy_wasm "testbed": loaded from the cache/



=== TEST 9: cached code damaged on disk is never run: it is compiled again, and the file replaced
--- init
File::Path::remove_tree("$ENV{TEST_NGINX_SERVROOT}/proxy_wasm_cache");
--- reload_init
for my $file (glob("$ENV{TEST_NGINX_SERVROOT}/proxy_wasm_cache/*.cwasm")) {
    open(my $fh, '+<', $file) or die "$file: $!";
    binmode $fh;
    my $middle = int((-s $file) / 2);
    seek($fh, $middle, 0);
    read($fh, my $byte, 1);
    seek($fh, $middle, 0);
    print $fh chr(ord($byte) ^ 0x10);
    close $fh;
}
--- config
    location / {
        proxy_wasm testbed "response_headers add_header response x-version 1";
        empty_gif;
    }
--- reload_config
    location / {
        proxy_wasm testbed "response_headers add_header response x-version 2";
        empty_gif;
    }
--- request
GET /
--- reload_response_like eval
[qr/x-version: 1/, qr/x-version: 2/]
--- error_log eval
qr/\[warn\] .*proxy_wasm "testbed": cannot use the cached code "\S+proxy_wasm_cache\/[0-9a-f]{64}\.cwasm" \(damaged: its checksum does not match\): compiling/



=== TEST 10: traps in the new workers are caught as in the first ones
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        module hostile $TEST_NGINX_WAT/hostile.wat;
    }
--- config
    location / {
        proxy_wasm testbed "response_headers add_header response x-version 1";
        empty_gif;
    }
--- reload_config
    location / {
        proxy_wasm testbed "response_headers add_header response x-version 2";
        empty_gif;
    }
    location /divide {
        proxy_wasm hostile d;
        empty_gif;
    }
--- request
GET /
--- reload_response_like eval
[qr/x-version: 1/, qr/x-version: 2/]
--- request_after_reload
GET /divide
--- error_code_after_reload: 500
--- error_log eval
qr/proxy_on_request_headers failed: wasm trap: integer divide by zero/
