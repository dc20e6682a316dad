# Network (L4) filters in stream{}: Rust-SDK filters (t/filters/network)
# in front of nginx's own HTTP server and a real Redis server (Debian's
# redis-server), over raw TCP: counting, rewriting, closing, holding a
# direction until an HTTP call answers, holding new connections, a Redis
# protocol filter, partial reads, half-close, resets, 10 MB each way, a
# panicking filter next to healthy connections.
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

default_modules(network => '$TEST_NGINX_FILTERS/network.wasm');

test_certificates('svc');

my ($redis, $resetting, $grpc) = Test::Nginx::Socket::free_ports(3);
$ENV{TEST_NGINX_REDIS_PORT} = $redis;
$ENV{TEST_NGINX_RESETTING_PORT} = $resetting;
$ENV{TEST_NGINX_GRPC_PORT} = $grpc;
redis_server($redis);
resetting_server($resetting);
grpc_server($grpc);

# curl(url, extra options): what curl printed, with its exit code
sub curl {
    my ($url, @options) = @_;
    my ($code, $out) = run_command("curl -sS --max-time 5 --cacert $ENV{TEST_NGINX_CERTS}/ca.crt @options '$url'");
    return "exit $code: $out";
}

run_tests();

__DATA__

=== TEST 1: a byte counter: both directions and the connections in metrics; properties; how each side closed
--- stream_server_config
        proxy_wasm network count;
        proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- config
    location /t {
        return 200 "hello from upstream\n";
    }
    location /metrics {
        proxy_wasm_metrics;
    }
--- stream_request eval
"GET /t HTTP/1.0\r\nHost: x\r\n\r\n"
--- stream_response_like eval
qr/^HTTP\/1.1 200 OK\r\n.*hello from upstream\n$/s
--- stream_closed
--- request
GET /metrics
--- response_body_like eval
qr/network_tcp_bytes_downstream 28\n.*network_tcp_bytes_upstream \d{3}\n.*network_tcp_connections 1\n/s
--- error_log eval
[qr/#\d+ new connection from 127\.0\.0\.1:\d+ to port \d+ \(id \d+, sni -, tls -\)/,
 qr/#\d+ upstream closed: Remote \(upstream 127\.0\.0\.1:\d+\)/,
 qr/#\d+ downstream closed: Local/,
 qr/#(\d+) stored conn-\1, server_port variable \d+, configured -/,
 qr/#\d+ on_log/]



=== TEST 2: rewriting the downstream data, also when what it rewrites comes in pieces
--- stream_server_config
        proxy_wasm network "rewrite /old /new";
        proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- config
    location /new {
        return 200 "new\n";
    }
--- stream_request eval
["GET /o", "ld HTTP/1.0\r\nHost: x\r\n\r\n"]
--- raw_request_middle_delay: 0.3
--- stream_response_like eval
qr/^HTTP\/1.1 200 OK\r\n.*\r\n\r\nnew\n$/s
--- stream_closed
--- no_error_log
[error]



=== TEST 3: a filter closes the connection on a pattern: nothing goes upstream
--- stream_server_config
        proxy_wasm network "close_on EVIL";
        proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- config
    location / {
        return 200 "should not be seen\n";
    }
--- stream_request eval
"GET /EVIL HTTP/1.0\r\n\r\n"
--- stream_response eval
""
--- stream_closed
--- error_log eval
[qr/closing: the data has "EVIL"/,
 qr/proxy_wasm: a filter closed the connection/]
--- no_error_log eval
[qr/"GET \/EVIL/]



=== TEST 4: the upstream's data waits for an HTTP call; its answer goes before it
--- stream_server_config
        proxy_wasm network "hold_upstream 127.0.0.1:$TEST_NGINX_SERVER_PORT";
        proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- config
    location /banner {
        return 200 "BANNER ";
    }
    location /t {
        return 200 "served\n";
    }
--- stream_request eval
"GET /t HTTP/1.0\r\n\r\n"
--- stream_response_like eval
qr/^BANNER HTTP\/1.1 200 OK\r\n.*\r\n\r\nserved\n$/s
--- stream_closed
--- error_log eval
[qr/#\d+ holds \d+ upstream bytes for a call/,
 qr/#\d+ call answered: 7 bytes/]



=== TEST 5: a new connection held by on_new_connection goes on when a tick continues it
--- stream_server_config
        proxy_wasm network "hold_new 300";
        proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- config
    location /t {
        return 200 "served\n";
    }
--- stream_request eval
"GET /t HTTP/1.0\r\n\r\n"
--- stream_response_like eval
qr/\r\n\r\nserved\n$/s
--- stream_closed
--- error_log eval
[qr/#\d+ held/,
 qr/#\d+ continued by the tick/]



=== TEST 6: a connection held longer than proxy_wasm_hold_timeout is closed
--- stream_server_config
        proxy_wasm network "hold_new 5000";
        proxy_wasm_hold_timeout 300ms;
        proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- stream_request eval
"GET /t HTTP/1.0\r\n\r\n"
--- stream_response eval
""
--- stream_closed
--- error_log eval
["a filter held the new connection longer than proxy_wasm_hold_timeout",
 qr/#\d+ downstream closed: Local/]



=== TEST 7: a filter in front of Redis: commands counted, FLUSHALL refused, a command split over reads
--- stream_server_config
        proxy_wasm network redis;
        proxy_pass 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- config
    location /metrics {
        proxy_wasm_metrics;
    }
--- stream_request eval
["*3\r\n\$3\r\nSET\r\n\$3\r\nkey\r\n\$5\r\nva", "lue\r\n*1\r\n\$8\r\nFLUSH", "ALL\r\n*2\r\n\$3\r\nGET\r\n\$3\r\nkey\r\n"]
--- raw_request_middle_delay: 0.2
--- stream_response_like eval
qr/^\+OK\r\n-ERR unknown command 'DENY_ALL'[^\r]*\r\n\$5\r\nvalue\r\n$/
--- request
GET /metrics
--- response_body_like eval
qr/network_redis_command_flushall 1\n.*network_redis_command_get 1\n.*network_redis_command_set 1\n.*network_redis_commands 3\n/s
--- error_log
FLUSHALL denied



=== TEST 8: Redis pipelines through the filter: 500 commands in one write
--- stream_server_config
        proxy_wasm network redis;
        proxy_pass 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- stream_request eval
CORE::join '', map { "*3\r\n\$4\r\nINCR\r\n" =~ s/\*3/*2/r . "\$7\r\ncounter\r\n" } 1 .. 500
--- stream_response_like eval
qr/:500\r\n$/
--- no_error_log
[error]



=== TEST 9: 10 MB to upstream and 10 MB from upstream through a filter
--- stream_server_config
        proxy_wasm network count;
        proxy_pass 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- stream_request eval
"*3\r\n\$3\r\nSET\r\n\$3\r\nbig\r\n\$10485760\r\n" . ("x" x 10485760) . "\r\n*2\r\n\$6\r\nSTRLEN\r\n\$3\r\nbig\r\n*2\r\n\$3\r\nGET\r\n\$3\r\nbig\r\n"
--- stream_response eval
"+OK\r\n:10485760\r\n\$10485760\r\n" . ("x" x 10485760) . "\r\n"
--- timeout: 30
--- no_error_log
[error]



=== TEST 10: a panicking filter fails its connection only; the next connection is served
--- stream_server_config
        proxy_wasm network "panic_on BOOM";
        proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- config
    location /t {
        return 200 "served\n";
    }
--- stream_request eval
"GET /BOOM HTTP/1.0\r\n\r\n"
--- stream_response eval
""
--- stream_closed
--- request
GET /t
--- response_body
served
--- error_log eval
[qr/panicked at 'the data has BOOM'/,
 qr/proxy_wasm: a filter failed: closing the connection/]



=== TEST 11: the client half-closes: the upstream gets the end of the data, its answer still comes
--- stream_server_config
        proxy_wasm network count;
        proxy_half_close on;
        proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- config
    location /t {
        return 200 "served\n";
    }
--- stream_request eval
"GET /t HTTP/1.0\r\n\r\n"
--- stream_half_close
--- stream_response_like eval
qr/\r\n\r\nserved\n$/s
--- stream_closed
--- error_log eval
[qr/#\d+ downstream closed: Remote/,
 qr/#\d+ upstream closed: Remote/]



=== TEST 12: a filter that holds the downstream's data gets no more than proxy_wasm_buffer_limit (and a proxy buffer): nginx stops reading; then 10 MB go through
--- stream_server_config
        proxy_wasm network "hold_downstream 500";
        proxy_wasm_buffer_limit 64k;
        proxy_pass 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- stream_request eval
"*3\r\n\$3\r\nSET\r\n\$4\r\nbig2\r\n\$10485760\r\n" . ("y" x 10485760) . "\r\n*2\r\n\$6\r\nSTRLEN\r\n\$4\r\nbig2\r\n"
--- stream_response eval
"+OK\r\n:10485760\r\n"
--- timeout: 30
--- error_log eval
qr/#\d+ continued by the tick/
--- log_eval
my ($largest) = /largest downstream data: (\d+)/;
defined $largest && $largest >= 65536 && $largest <= 65536 + 16384



=== TEST 13: the client resets the connection: the filter hears the downstream close from the remote peer
--- stream_server_config
        proxy_wasm network count;
        proxy_pass 127.0.0.1:$TEST_NGINX_RESETTING_PORT;
--- stream_request eval
"some data"
--- stream_reset
--- wait: 0.5
--- error_log eval
[qr/#\d+ downstream closed: Remote/,
 qr/#\d+ on_log/]
--- no_error_log
[error]



=== TEST 14: the upstream resets the connection: the upstream close is heard, the client's connection ends
--- stream_server_config
        proxy_wasm network count;
        proxy_pass 127.0.0.1:$TEST_NGINX_RESETTING_PORT;
--- stream_request eval
"some data"
--- stream_response eval
""
--- stream_closed
--- error_log eval
[qr/#\d+ upstream closed: Remote/,
 qr/#\d+ downstream closed: Local/]



=== TEST 15: TLS terminated by the stream{} server: the filter sees the clear data, the TLS version and the server name
--- stream_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1 ssl;
        ssl_certificate $TEST_NGINX_CERTS/svc.crt;
        ssl_certificate_key $TEST_NGINX_CERTS/svc.key;
        proxy_wasm network count;
        proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
    }
--- config
    location /t {
        return 200 "served over TLS\n";
    }
--- request eval
[sub {
    Test::More::like(main::curl("https://svc.test:$ENV{TEST_NGINX_RAND_PORT_1}/t",
                                "--resolve svc.test:$ENV{TEST_NGINX_RAND_PORT_1}:127.0.0.1"),
                     qr/^exit 0: served over TLS$/m, "TEST 15 - curl through TLS");
}]
--- error_log eval
qr/#\d+ new connection from 127\.0\.0\.1:\d+ to port \d+ \(id \d+, sni svc\.test, tls TLSv1\.[23]\)/



=== TEST 16: TLS passed through with ssl_preread: on_new_connection runs after it and sees the server name
--- stream_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        ssl_preread on;
        proxy_wasm network count;
        proxy_pass 127.0.0.1:$TEST_NGINX_RAND_PORT_2;
    }
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_2 ssl;
        ssl_certificate $TEST_NGINX_CERTS/svc.crt;
        ssl_certificate_key $TEST_NGINX_CERTS/svc.key;
        location /t {
            return 200 "served by the TLS upstream\n";
        }
    }
--- request eval
[sub {
    Test::More::like(main::curl("https://svc.test:$ENV{TEST_NGINX_RAND_PORT_1}/t",
                                "--resolve svc.test:$ENV{TEST_NGINX_RAND_PORT_1}:127.0.0.1"),
                     qr/^exit 0: served by the TLS upstream$/m, "TEST 16 - curl through ssl_preread");
}]
--- error_log eval
qr/#\d+ new connection from 127\.0\.0\.1:\d+ to port \d+ \(id \d+, sni svc\.test, tls -\)/



=== TEST 17: a chain of two network filters: downstream data through them in order, upstream data in reverse; the stream{} chain is inherited by a server without its own
--- stream_config
    proxy_wasm network count;
    proxy_wasm network "rewrite /old /new";
--- stream_server_config
        proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- config
    location /new {
        return 200 "new\n";
    }
    location /metrics {
        proxy_wasm_metrics;
    }
--- stream_request eval
"GET /old HTTP/1.0\r\n\r\n"
--- stream_response_like eval
qr/\r\n\r\nnew\n$/
--- stream_closed
--- request
GET /metrics
--- response_body_like eval
qr/network_tcp_bytes_downstream 21\n/



=== TEST 18: per-connection instances (proxy_wasm_isolation request): a panic costs only its connection
--- stream_server_config
        proxy_wasm network "panic_on BOOM";
        proxy_wasm_isolation request;
        proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- config
    location /t {
        return 200 "served\n";
    }
--- stream_request eval
"GET /BOOM HTTP/1.0\r\n\r\n"
--- stream_response eval
""
--- stream_closed
--- error_log eval
[qr/panicked at 'the data has BOOM'/,
 qr/proxy_wasm: a filter failed: closing the connection/]



=== TEST 19: proxy_wasm_failure fail_open: the failed filter is skipped, the data goes on
--- stream_server_config
        proxy_wasm network "panic_on BOOM";
        proxy_wasm_failure fail_open;
        proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- config
    location / {
        return 200 "served anyway\n";
    }
--- stream_request eval
"GET /BOOM HTTP/1.0\r\n\r\n"
--- stream_response_like eval
qr/\r\n\r\nserved anyway\n$/
--- stream_closed
--- error_log eval
[qr/panicked at 'the data has BOOM'/,
 qr/filter failed: skipped for the rest of the request \(proxy_wasm_failure fail_open\)/]



=== TEST 20: an unknown module in stream{} fails the configuration, naming the file and line
--- stream_server_config
        proxy_wasm nosuch;
        proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- must_die
--- error_log eval
qr/\[emerg\] .*nosuch.* in .*nginx\.conf:\d+/



=== TEST 21: proxy_wasm in stream{} with no wasm{} block
--- main_config
--- stream_server_config
        proxy_wasm network;
        proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- must_die
--- error_log eval
qr/\[emerg\] (?:\d+#\d+: )?no wasm\{\} block is defined before stream\{\}: module "network" is unknown in .*nginx\.conf:\d+/



=== TEST 22: UDP: each datagram session runs the chain; the answer comes back through it
--- stream_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1 udp;
        proxy_wasm network count;
        proxy_responses 1;
        proxy_timeout 1s;
        proxy_pass 127.0.0.1:$TEST_NGINX_RAND_PORT_2;
    }
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_2 udp;
        return "pong";
    }
--- config
    location /metrics {
        proxy_wasm_metrics;
    }
--- request eval
[sub {
    my $sock = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$ENV{TEST_NGINX_RAND_PORT_1}",
                                     Proto => 'udp') or die "udp: $!";
    $sock->send("ping");
    my $answer = '';
    my $select = IO::Select->new($sock);
    $sock->recv($answer, 100) if $select->can_read(3);
    Test::More::is($answer, "pong", "TEST 22 - the datagram's answer");
}, "GET /metrics"]
--- response_body_like eval
[undef, qr/network_tcp_bytes_downstream 4\n.*network_tcp_bytes_upstream 4\n.*network_tcp_connections 1\n/s]
--- wait: 1.5
--- error_log eval
[qr/#\d+ downstream closed: Local/, qr/#\d+ on_log/]



=== TEST 23: one module in both subsystems: an HTTP filter of it in http{}, a network filter of it in stream{}
--- stream_server_config
        proxy_wasm network count;
        proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- config
    location /t {
        proxy_wasm network http;
        empty_gif;
    }
--- stream_request eval
"GET /t HTTP/1.0\r\n\r\n"
--- stream_response_like eval
qr/^HTTP\/1.1 200 OK\r\n.*x-network-module: http\r\n/s
--- stream_closed
--- error_log eval
[qr/#\d+ new connection from 127\.0\.0\.1/, qr/#\d+ upstream closed: Remote/]



=== TEST 24: shared data from network contexts: a count across connections
--- main_config
    wasm {
        module network $TEST_NGINX_FILTERS/network.wasm;
        shm_kv * 1m;
    }
--- stream_server_config
        proxy_wasm network "count shared";
        proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- config
    location /t {
        return 200 "served\n";
    }
--- request eval
[sub {
    for my $i (1 .. 3) {
        my $s = IO::Socket::INET->new("127.0.0.1:$ENV{TEST_NGINX_STREAM_PORT}") or die $!;
        print $s "GET /t HTTP/1.0\r\n\r\n";
        local $/;
        my $answer = <$s>;
        Test::More::like($answer, qr/served\n$/, "TEST 24 - connection $i");
    }
}]
--- error_log eval
[qr/#\d+ connections so far: 1\b/, qr/#\d+ connections so far: 2\b/, qr/#\d+ connections so far: 3\b/]



=== TEST 25: nginx's access rules come first: a denied connection never reaches the filters
--- stream_server_config
        deny 127.0.0.1;
        proxy_wasm network count;
        proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- stream_request eval
"GET /t HTTP/1.0\r\n\r\n"
--- stream_response eval
""
--- stream_closed
--- error_log
access forbidden by rule
--- no_error_log
new connection from



=== TEST 26: the downstream's data waits for a gRPC call from the connection's context; its answer goes before it
--- stream_server_config
        proxy_wasm network "grpc_hold 127.0.0.1:$TEST_NGINX_GRPC_PORT";
        proxy_pass 127.0.0.1:$TEST_NGINX_REDIS_PORT;
--- stream_request eval
"*2\r\n\$4\r\nECHO\r\n\$2\r\nhi\r\n"
--- stream_response eval
"+PONG\r\n\$2\r\nhi\r\n"
--- error_log eval
[qr/#\d+ holds 22 downstream bytes for a gRPC call/,
 qr/#\d+ gRPC call answered: status 0, 14 bytes/]



=== TEST 27: a filter without data callbacks (a raw-ABI .wat): its connections' data goes by the chain; the close callbacks still come
--- main_config
    wasm {
        module accept $TEST_NGINX_WAT/network_accept.wat;
    }
--- stream_server_config
        proxy_wasm accept;
        proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- config
    location /t {
        return 200 "served\n";
    }
--- stream_request eval
"GET /t HTTP/1.0\r\n\r\n"
--- stream_response_like eval
qr/\r\n\r\nserved\n$/
--- stream_closed
--- error_log eval
[qr/proxy_wasm "accept" #\d+: accepted a connection/,
 qr/proxy_wasm "accept" #\d+: upstream closed/,
 qr/proxy_wasm "accept" #\d+: downstream closed/]



=== TEST 28: proxy_wasm_property in stream{}: values with the session's variables; a server's own line wins over stream{}'s
--- stream_config
    proxy_wasm_property my.prop "from stream{}";
    proxy_wasm_property other.prop "inherited";
--- stream_server_config
        proxy_wasm_property my.prop "$remote_addr on $server_port";
        proxy_wasm network count;
        proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- config
    location /t {
        return 200 "served\n";
    }
--- stream_request eval
"GET /t HTTP/1.0\r\n\r\n"
--- stream_response_like eval
qr/\r\n\r\nserved\n$/
--- stream_closed
--- error_log eval
qr/#\d+ stored conn-\d+, server_port variable \d+, configured 127\.0\.0\.1 on \d+/



=== TEST 29: proxy_wasm_property in stream{}: a reserved path fails the configuration
--- stream_server_config
        proxy_wasm_property source.address "x";
        proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- must_die
--- error_log eval
qr/\[emerg\] (?:\d+#\d+: )?property "source\.address" is one of nginx's attributes and cannot be defined in .*nginx\.conf:\d+/



=== TEST 30: shared queues from network contexts: each connection enqueues, the root context drains
--- main_config
    wasm {
        module network $TEST_NGINX_FILTERS/network.wasm;
        shm_queue conns 64k;
    }
--- stream_server_config
        proxy_wasm network "queue conns";
        proxy_pass 127.0.0.1:$TEST_NGINX_SERVER_PORT;
--- config
    location /t {
        return 200 "served\n";
    }
--- stream_request eval
"GET /t HTTP/1.0\r\n\r\n"
--- stream_response_like eval
qr/\r\n\r\nserved\n$/
--- stream_closed
--- error_log eval
[qr/#\d+ enqueued (127\.0\.0\.1:\d+)/,
 qr/proxy_wasm "network" #\d+: dequeued 127\.0\.0\.1:\d+/]
