# Fuzzing at the real boundary: every host function called with hostile
# arguments by a guest running in nginx (with shared zones, metrics and
# calls to reach), directive arguments through `nginx -t`, and a hostile
# upstream answering HTTP calls. The decoders are fuzzed directly by
# tests/fuzz.rs.
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

our $Seed = $ENV{NGX_PROXY_WASM_FUZZ_SEED} || 20261206;

run_tests();

__DATA__

=== TEST 1: a hostile guest calls every host function with hostile arguments from every callback: only statuses come back
--- main_config eval
"    wasm {
        module hostile \$TEST_NGINX_FILTERS/hostile_calls.wasm $::Seed;
        module testbed \$TEST_NGINX_FILTERS/testbed.wasm;
        shm_kv * 1m;
        shm_queue q 64k;
    }"
--- config
    location /hostile {
        proxy_wasm hostile 100;
        empty_gif;
    }
    location /hostile/body {
        proxy_wasm hostile 100;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/echo;
    }
    location /echo {
        return 200 "echo";
    }
    location /ok {
        proxy_wasm testbed "response_headers add_header response x-ok yes";
        empty_gif;
    }
--- load: 200 4 GET /ok
--- request eval
[sub {
    my @requests = ((map { "GET /hostile HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" } 1 .. 20),
                    (map { "POST /hostile/body HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                           . "Content-Length: 9\r\n\r\nsome body" } 1 .. 10));
    my @hung = grep { !defined ProxyWasmTest::request_ends($_, 5) } @requests;
    Test::More::is(scalar @hung, 0, "every request under the hostile guest ended");
}, "GET /ok"]
--- error_code eval
[undef, 200]
--- response_headers eval
[undef, "X-Ok: yes"]
--- timeout: 10
--- no_error_log eval
[qr/unexpected status/, qr/host function \S+ panicked/, qr/internal error/,
 qr/proxy_on_\w+ failed: /]
--- error_log eval
[qr/hostile calls in on_request_headers: 100 calls/,
 qr/hostile calls in on_response_body: 100 calls/]



=== TEST 2: directive arguments: nginx -t never crashes or hangs, and refuses with one line naming the file and line
--- config
    location / {
        return 200;
    }
--- request eval
[sub {
    my @failures = ProxyWasmTest::fuzz_directives(count => 150, seed => $::Seed,
                                                   wat => "$ENV{TEST_NGINX_WAT}/abi_0_2_0.wat");
    Test::More::is(scalar @failures, 0, "150 random configurations")
        or Test::More::diag(CORE::join("\n", @failures[0 .. ($#failures > 2 ? 2 : $#failures)]));
}]



=== TEST 3: a hostile upstream (garbage, truncation, a huge head, bad chunks, a drip, resets, silence, interim floods, a huge body): every call ends, every request goes on
--- init
$::Upstream = ProxyWasmTest::hostile_upstream($ENV{TEST_NGINX_RAND_PORT_1});
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        socket_read_timeout 1s;
    }
--- config
    location / {
        proxy_wasm testbed "request_headers call 127.0.0.1:$TEST_NGINX_RAND_PORT_1 GET /h h 1500; request_headers pause; call_response continue";
        empty_gif;
    }
--- request eval
[(map { "GET /" } 1 .. 20), sub { ProxyWasmTest::stop_process($::Upstream) }]
--- error_code eval
[map { 200 } 1 .. 20]
--- timeout: 5
--- log_eval
# each of the ten behaviours twice; two of them complete (the drip and
# the valid response)
my @responses = /call #\d+ response: \d+ headers/g;
my @whole = /call #\d+ response: [1-9]\d* headers/g;
my @failed = /http call #\d+ to "[^"]+" failed: /g;
@responses == 20 && @whole == 4 && @failed == 16
--- no_error_log eval
[qr/panicked/, qr/internal error/]
