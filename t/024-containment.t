# Fault containment: a filter that fails on one request costs nobody else
# a request. The failed instance is replaced at once (a backoff only for a
# crash loop), requests with contexts in it end as proxy_wasm_failure
# says instead of hanging, and its root contexts start again by
# themselves.
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

default_modules(testbed => '$TEST_NGINX_FILTERS/testbed.wasm');

our $Services = <<'END';
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location /slow {
            # a call that takes half a minute: still under way
            limit_rate 5;
            return 200 "0123456789";
        }
        location /echo {
            # proxy_pass reads the body: $request_body is set
            proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/sink;
            add_header X-Body $request_body;
        }
        location /sink {
            return 200 "ok";
        }
        location /second {
            # the headers come back after about a second
            limit_rate 100;
            return 200 "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789";
        }
    }
END

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('http_config', $Services) unless defined $block->http_config;
});

# the test filter's panic, as the SDK reports it (at crit) and the host
# logs it
our $Panicked = qr/\[crit\] .*panicked at 'testbed panics in/;
our $Panic = qr/proxy_on_request_headers failed: wasm trap: wasm `unreachable` instruction executed/;

run_tests();

__DATA__

=== TEST 1: a trap storm on one location: every bystander request of the same module is served
--- config
    location /panic {
        proxy_wasm testbed "request_headers panic";
        empty_gif;
    }
    location / {
        proxy_wasm testbed "response_headers add_header response x-served yes";
        empty_gif;
    }
--- request eval
[sub {
    my $r = ProxyWasmTest::trap_storm(bystander => '/', trap => '/panic', seconds => 4, rate => 5);
    Test::More::cmp_ok($r->{requests}, '>', 1000, 'bystanders were served under load')
        or Test::More::diag($r->{output});
    Test::More::is($r->{failed}, 0, 'no bystander request failed')
        or Test::More::diag($r->{output});
    Test::More::cmp_ok(scalar @{$r->{traps}}, '>=', 15, 'traps at 5 a second');
    Test::More::is(CORE::join(',', grep { $_ != 500 } @{$r->{traps}}), '', 'every trap failed its own request');
}]
--- timeout: 10
--- error_log eval
[$::Panicked, $::Panic]
--- no_error_log
the next one starts in
filter unavailable
--- log_eval
my $traps = () = /proxy_on_request_headers failed: wasm trap/g;
my $replaced = () = /starting a new instance/g;
$traps >= 15 && $replaced == $traps



=== TEST 2: a filter that fails on every request is replaced at once each time (no backoff for bad requests)
--- config
    location /trap {
        proxy_wasm testbed "request_headers unreachable";
        empty_gif;
    }
    location /ok {
        proxy_wasm testbed "request_headers count";
        empty_gif;
    }
--- request eval
["GET /trap", "GET /trap", "GET /trap", "GET /trap", "GET /trap", "GET /ok"]
--- error_code eval
[500, 500, 500, 500, 500, 200]
--- grep_error_log eval
qr/proxy_on_request_headers failed|starting a new instance|the next one starts in|count \d+/
--- grep_error_log_out
proxy_on_request_headers failed
starting a new instance
proxy_on_request_headers failed
starting a new instance
proxy_on_request_headers failed
starting a new instance
proxy_on_request_headers failed
starting a new instance
proxy_on_request_headers failed
starting a new instance
count 1



=== TEST 3: a crash loop (an instance that fails before any callback returns) is backed off: 1 s, doubling
--- config
    location / {
        proxy_wasm testbed "create unreachable";
        empty_gif;
    }
--- request eval
["GET /", "GET /", "GET /", "GET /"]
--- request_delay: 0.4
--- error_code eval
[500, 500, 500, 500]
--- wait: 0.5
--- grep_error_log eval
qr/proxy_on_context_create failed|starting a new instance|the next one starts in [\d.]+s/
--- grep_error_log_out eval
qr/^proxy_on_context_create failed
starting a new instance
proxy_on_context_create failed
the next one starts in 0\.[5-6]s
the next one starts in 0\.[1-2]s
starting a new instance
$/



=== TEST 4: requests held in the failed instance end at once (not at a timeout), and the trap's line counts them
--- config
    proxy_wasm_hold_timeout 30s;
    location /hold {
        proxy_wasm testbed "request_headers pause";
        empty_gif;
    }
    location /panic {
        proxy_wasm testbed "request_headers panic";
        empty_gif;
    }
--- request eval
["GET /hold", "GET /hold", "GET /panic"]
--- concurrent
--- request_delay: 0.2
--- timeout: 5
--- error_code eval
[500, 500, 500]
--- error_log eval
[$::Panicked, $::Panic, qr/; 2 other requests with contexts in this instance end with it/,
 qr/filter unavailable: its instance failed while the request had a context in it: failing the request/]
--- no_error_log
held the request longer



=== TEST 5: ... with fail_open, they go on without the filter
--- config
    proxy_wasm_hold_timeout 30s;
    location /hold {
        proxy_wasm_failure fail_open;
        proxy_wasm testbed "request_headers pause";
        empty_gif;
    }
    location /panic {
        proxy_wasm testbed "request_headers panic";
        empty_gif;
    }
--- request eval
["GET /hold", "GET /panic"]
--- concurrent
--- request_delay: 0.2
--- timeout: 5
--- error_code eval
[200, 500]
--- error_log eval
[$::Panicked, qr/; 1 other request with contexts in this instance end with it/,
 qr/filter unavailable \(its instance failed while the request had a context in it\): skipped/]



=== TEST 6: a request paused on an HTTP call and one held with its response end with the instance
--- config
    proxy_wasm_hold_timeout 30s;
    location /call {
        proxy_wasm testbed "request_headers call 127.0.0.1:$TEST_NGINX_RAND_PORT_1 GET /slow; request_headers pause";
        empty_gif;
    }
    location /response {
        proxy_wasm testbed "response_headers pause";
        empty_gif;
    }
    location /panic {
        proxy_wasm testbed "request_headers panic";
        empty_gif;
    }
--- request eval
["GET /call", "GET /response", "GET /panic"]
--- concurrent
--- request_delay: 0.2
--- timeout: 5
--- error_code eval
[500, 500, 500]
--- error_log eval
[$::Panicked, qr/; 2 other requests with contexts in this instance end with it/]
--- no_error_log
call_response



=== TEST 7: a request waiting for its upstream fails when the response comes back
--- config
    location /upstream {
        proxy_wasm testbed "response_headers add_header response x-seen yes";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/second;
    }
    location /panic {
        proxy_wasm testbed "request_headers panic";
        empty_gif;
    }
--- request eval
["GET /upstream", "GET /panic"]
--- concurrent
--- request_delay: 0.3
--- timeout: 5
--- error_code eval
[500, 500]
--- error_log eval
[$::Panicked, qr/; 1 other request with contexts in this instance end with it/]



=== TEST 8: a request whose body a filter holds ends with the instance
--- config
    proxy_wasm_hold_timeout 30s;
    location /held {
        proxy_wasm testbed "request_body pause";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/echo;
    }
    location /panic {
        proxy_wasm testbed "request_headers panic";
        empty_gif;
    }
--- request eval
["POST /held\nthe held body", "GET /panic"]
--- concurrent
--- request_delay: 0.3
--- timeout: 5
--- error_code eval
[500, 500]
--- error_log eval
[$::Panicked, qr/; 1 other request with contexts in this instance end with it/,
 qr/filter unavailable: its instance failed while the request had a context in it: failing the request/]



=== TEST 9: ... with fail_open, the body it held goes on without it
--- config
    proxy_wasm_hold_timeout 30s;
    location /held {
        proxy_wasm_failure fail_open;
        proxy_wasm testbed "request_body pause";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/echo;
    }
    location /panic {
        proxy_wasm testbed "request_headers panic";
        empty_gif;
    }
--- request eval
["POST /held\nthe held body", "GET /panic"]
--- concurrent
--- request_delay: 0.3
--- timeout: 5
--- error_code eval
[200, 500]
--- response_headers eval
["X-Body: the held body", ""]
--- error_log eval
[$::Panicked, qr/filter unavailable \(its instance failed while the request had a context in it\): skipped/]



=== TEST 10: root contexts start again in the new instance by themselves (no request needed)
--- config
    location / {
        proxy_wasm testbed "trace; configure tick_period 50; tick count; tick when_count 3 panic";
        empty_gif;
    }
--- wait: 0.6
--- error_log eval
[$::Panicked]
--- grep_error_log eval
qr/#\d+ on_configure|count \d+|proxy_on_tick failed|starting a new instance/
--- grep_error_log_out eval
qr/^(#\d+ on_configure\n)+count 1
count 2
count 3
proxy_on_tick failed
starting a new instance
#\d+ on_configure
count 1
count 2
count 3
proxy_on_tick failed
starting a new instance
#\d+ on_configure
/
--- no_error_log
the next one starts in



=== TEST 11: ... and a queue registered in on_configure is registered again: its items reach the new instance
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        shm_queue q 64k;
    }
--- config
    location /receiver {
        proxy_wasm testbed "configure queue_register q; queue_ready dequeue ready";
        return 204;
    }
    location /panic {
        proxy_wasm testbed "request_headers panic";
        empty_gif;
    }
    location /put {
        proxy_wasm testbed "request_headers enqueue testbed q after-the-trap";
        empty_gif;
    }
--- request eval
["GET /panic", sub { select undef, undef, undef, 0.2 }, "GET /put"]
--- error_code eval
[500, undef, 200]
--- wait: 0.3
--- error_log eval
[$::Panicked, qr/starting a new instance/, qr/dequeued "after-the-trap"/]
--- grep_error_log eval
qr/registered queue q|starting a new instance|dequeued "[^"]*"/
--- grep_error_log_out eval
qr/registered queue q\n(registered queue q\n)*starting a new instance\nregistered queue q\ndequeued "after-the-trap"\n$/



=== TEST 12: isolated instances: a failure ends only its own request; nothing is replaced
--- config
    proxy_wasm_isolation stream;
    location /upstream {
        proxy_wasm testbed "response_headers add_header response x-seen yes";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/second;
    }
    location /panic {
        proxy_wasm testbed "request_headers panic";
        empty_gif;
    }
--- request eval
["GET /upstream", "GET /panic"]
--- concurrent
--- request_delay: 0.3
--- timeout: 5
--- error_code eval
[200, 500]
--- response_headers eval
["X-Seen: yes", ""]
--- error_log eval
[$::Panicked, $::Panic]
--- no_error_log
other request
starting a new instance
