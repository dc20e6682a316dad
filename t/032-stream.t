# Network (L4) filters in stream{}: Rust-SDK filters (t/filters/network)
# in front of nginx's own HTTP server and a real Redis server, over raw TCP.
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

default_modules(network => '$TEST_NGINX_FILTERS/network.wasm');

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
[qr/#\d+ new connection from 127\.0\.0\.1:\d+ to port \d+ \(id \d+, sni -\)/,
 qr/#\d+ upstream closed: Remote/,
 qr/#\d+ downstream closed: Local/,
 qr/#\d+ on_log/]
