# gRPC calls and streams (proxy_grpc_*) against a real gRPC server
# (t/lib/grpc_server.py on python3-grpcio): unary, server streaming, client
# streaming, bidirectional, large messages, deadlines, a server that is
# down, cancel and close, TLS, one shared channel per target, calls from
# root contexts, a Rust-SDK filter that authorizes requests through a gRPC
# service; and against a misbehaving HTTP/2 server (t/lib/h2_hostile.py):
# GOAWAY, RST_STREAM, a dropped connection, responses without a status or
# with broken messages, a small flow-control window.
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

default_modules(testbed => '$TEST_NGINX_FILTERS/testbed.wasm',
                grpc_auth => '$TEST_NGINX_FILTERS/grpc_auth.wasm');

test_certificates('svc');

my ($plain, $tls, $down, $hostile) = Test::Nginx::Socket::free_ports(4);
$ENV{TEST_NGINX_H2_PORT} = $hostile;
$ENV{TEST_NGINX_GRPC_PORT} = $plain;
$ENV{TEST_NGINX_GRPC_TLS_PORT} = $tls;
$ENV{TEST_NGINX_GRPC_DOWN_PORT} = $down;
$ENV{TEST_NGINX_GRPC_LOG} = "$ENV{TEST_NGINX_CERTS}/grpc.log";
grpc_server($plain, log => $ENV{TEST_NGINX_GRPC_LOG});
h2_hostile($hostile);
grpc_server($tls, cert => "$ENV{TEST_NGINX_CERTS}/svc.crt",
            key => "$ENV{TEST_NGINX_CERTS}/svc.key");

our $Upstreams = <<'END';
    upstream grpc_backend {
        server 127.0.0.1:$TEST_NGINX_GRPC_PORT;
    }
    upstream svc.test {
        server 127.0.0.1:$TEST_NGINX_GRPC_TLS_PORT;
    }
    # what the locations under test pass their requests to
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location /auth {
            return 200 "served to $http_x_auth\n";
        }
        location / {
            return 200 "served\n";
        }
    }
END

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('http_config', $Upstreams) unless defined $block->http_config;
});

run_tests();

__DATA__

=== TEST 1: a unary call from on_request_headers holds the request until its response continues it
--- config
    location /t {
        proxy_wasm testbed "request_headers grpc_call grpc_backend test.Echo Echo hello%20grpc 5000 x-user=alice; request_headers pause; grpc_response continue";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- response_body
served
--- error_log eval
[qr/grpc call #(\d+) dispatched to grpc_backend/,
 qr/grpc call #\d+ response: status 0, 10 bytes "hello grpc"/]
--- no_error_log
[error]



=== TEST 2: a status the server sends reaches the filter with its message, and is not logged as a failure
--- config
    location /t {
        proxy_wasm testbed "request_headers grpc_call grpc_backend test.Echo Echo hi 5000 x-status=7 x-message=not%20you; request_headers pause; grpc_response continue";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- response_body
served
--- error_log eval
qr/grpc call #\d+ response: status 7 "not you"/
--- no_error_log
[error]
failed



=== TEST 3: server streaming: initial metadata, each message, trailing metadata, then the close with status 0
--- config
    location /t {
        proxy_wasm testbed "request_headers grpc_stream grpc_backend test.Echo Count; request_headers grpc_send 3 end; request_headers pause; grpc_close continue";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- response_body
served
--- grep_error_log eval
qr/grpc stream #\d+ (message: \d+ bytes "[^"]*"|trailing "x-count: 3"|initial metadata: \d+ entries|close: status \d+ \(\d+\) "[^"]*")/
--- grep_error_log_out eval
qr/\Agrpc stream #(\d+) initial metadata: \d+ entries
grpc stream #\1 message: 9 bytes "message 1"
grpc stream #\1 message: 9 bytes "message 2"
grpc stream #\1 message: 9 bytes "message 3"
grpc stream #\1 trailing "x-count: 3"
grpc stream #\1 close: status 0 \(0\) ""
\z/
--- no_error_log
[error]



=== TEST 4: client streaming: several messages, then the guest's end; one response
--- config
    location /t {
        proxy_wasm testbed "request_headers grpc_stream grpc_backend test.Echo Concat; request_headers grpc_send a; request_headers grpc_send bb; request_headers grpc_send ccc end; request_headers pause; grpc_close continue";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- response_body
served
--- error_log eval
[qr/grpc send #\d+ 3 bytes, end: ok/,
 qr/grpc stream #\d+ message: 8 bytes "a\+bb\+ccc"/,
 qr/grpc stream #\d+ close: status 0 \(0\) ""/]
--- no_error_log
[error]



=== TEST 5: bidirectional: the filter answers each message from on_grpc_stream_message, the server ends after "bye"
--- config
    location /t {
        proxy_wasm testbed "request_headers grpc_stream grpc_backend test.Echo Chat; request_headers grpc_send hi; request_headers pause; grpc_message count; grpc_message when_count 1 grpc_send how%20are%20you; grpc_message when_count 2 grpc_send bye end; grpc_close continue";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- response_body
served
--- grep_error_log eval
qr/grpc stream #\d+ (message: \d+ bytes "[^"]*"|close: status \d+ \(\d+\) "[^"]*")/
--- grep_error_log_out eval
qr/\Agrpc stream #(\d+) message: 8 bytes "echo: hi"
grpc stream #\1 message: 17 bytes "echo: how are you"
grpc stream #\1 message: 9 bytes "echo: bye"
grpc stream #\1 close: status 0 \(0\) ""
\z/
--- no_error_log
[error]



=== TEST 6: large messages both ways, over many frames and beyond the first flow-control windows
--- config
    location /t {
        proxy_wasm testbed "request_headers grpc_call grpc_backend test.Echo Big 3000000 5000; request_headers grpc_call grpc_backend test.Echo Echo big:2000000 5000; request_headers pause; grpc_response count; grpc_response when_count 2 continue";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- response_body
served
--- error_log eval
[qr/grpc call #\d+ response: status 0, 3000000 bytes "abcdefghijklmnopqrstuvwxyzabcdefghijklmn"/,
 qr/grpc call #\d+ response: status 0, 2000000 bytes "abcdefghijklmnopqrstuvwxyzabcdefghijklmn"/]
--- no_error_log
[error]



=== TEST 7: a response message larger than http_call_max_body_size fails the call with RESOURCE_EXHAUSTED
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        http_call_max_body_size 64k;
    }
--- config
    location /t {
        proxy_wasm testbed "request_headers grpc_call grpc_backend test.Echo Big 100000 5000; request_headers pause; grpc_response continue";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- response_body
served
--- error_log eval
[qr/grpc call #\d+ response: status 8 "a response message of 100000 bytes is larger than 65536"/,
 qr/\[error\].*grpc call #\d+ to "grpc_backend" failed: a response message of 100000 bytes is larger than 65536 \(status 8\)/]



=== TEST 8: a deadline that expires ends the call with DEADLINE_EXCEEDED: the server's (it got grpc-timeout) or the host's, whichever comes first; a server that never answers meets the host's
--- config
    location /t {
        proxy_wasm testbed "request_headers grpc_call grpc_backend test.Echo Sleep 1500 200; request_headers grpc_call 127.0.0.1:$TEST_NGINX_H2_PORT hostile.H Silent hi 300; request_headers pause; grpc_response count; grpc_response when_count 2 continue";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- response_body
served
--- error_log eval
[qr/grpc call #\d+ response: status 4 "(deadline exceeded|Deadline Exceeded)"/,
 qr/\[error\].*grpc call #\d+ to "127\.0\.0\.1:\d+" failed: deadline exceeded \(status 4\)/]



=== TEST 9: a server that is down: UNAVAILABLE
--- config
    location /t {
        proxy_wasm testbed "request_headers grpc_call 127.0.0.1:$TEST_NGINX_GRPC_DOWN_PORT test.Echo Echo hi 5000; request_headers pause; grpc_response continue";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- response_body
served
--- error_log eval
[qr/grpc call #\d+ response: status 14 "refused"/,
 qr/\[error\].*grpc call #\d+ to "127\.0\.0\.1:\d+" failed: refused \(status 14\)/]



=== TEST 10: a cancelled stream gets no more callbacks, the server sees it cancelled; the token is then unknown
--- config
    location /t {
        proxy_wasm testbed "request_headers grpc_stream grpc_backend test.Echo Hang; request_headers grpc_send x; request_headers grpc_cancel; request_headers grpc_cancel; request_headers grpc_send y";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- response_body
served
--- error_log eval
[qr/grpc cancel #\d+: ok/,
 qr/grpc cancel #\d+: not found/,
 qr/grpc send #\d+ 1 bytes: not found/]
--- no_error_log eval
[qr/grpc stream #\d+ (message|close)/, "[error]"]
--- wait: 0.5
--- init
unlink $ENV{TEST_NGINX_GRPC_LOG};



=== TEST 11: the server saw the cancelled stream end as cancelled
--- config
    location /t {
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- response_body
served
--- init
my $log = do { local (@ARGV, $/) = $ENV{TEST_NGINX_GRPC_LOG}; <> } // '';
die "the server did not see the stream cancelled: '$log'" unless $log =~ /Hang: cancelled/;



=== TEST 12: closing a stream half-closes it: the response still comes; closing a unary call cancels it; sending on a closed stream is refused
--- config
    location /t {
        proxy_wasm testbed "request_headers grpc_stream grpc_backend test.Echo Concat; request_headers grpc_send one; request_headers grpc_close; request_headers grpc_send two; request_headers grpc_call grpc_backend test.Echo Sleep 300 5000; request_headers grpc_close; request_headers grpc_close; request_headers pause; grpc_close continue";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- response_body
served
--- error_log eval
[qr/grpc close #\d+: ok/,
 qr/grpc send #\d+ 3 bytes: bad argument/,
 qr/grpc close #\d+: not found/,
 qr/grpc stream #\d+ message: 3 bytes "one"/,
 qr/grpc stream #\d+ close: status 0 \(0\) ""/]
--- no_error_log eval
[qr/grpc call #\d+ response/, "[error]"]
--- wait: 0.5



=== TEST 13: TLS: an upstream{} target with https://, ALPN h2, the certificate checked against tls_trusted_certificate and the name
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        tls_trusted_certificate $TEST_NGINX_CERTS/ca.crt;
    }
--- config
    location /t {
        proxy_wasm testbed "request_headers grpc_call https://svc.test test.Echo Echo secret 5000; request_headers pause; grpc_response continue";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- response_body
served
--- error_log eval
qr/grpc call #\d+ response: status 0, 6 bytes "secret"/
--- no_error_log
[error]



=== TEST 14: TLS to a server the trusted certificates do not vouch for: UNAVAILABLE, the reason logged

--- config
    location /t {
        proxy_wasm testbed "request_headers grpc_call https://svc.test test.Echo Echo secret 5000; request_headers pause; grpc_response continue";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- response_body
served
--- error_log eval
[qr/grpc call #\d+ response: status 14 "tls/,
 qr/grpc channel to "svc\.test": certificate verify error/]



=== TEST 15: calls to one target share one HTTP/2 connection, kept for the next request
--- config
    location /t {
        proxy_wasm testbed "request_headers grpc_stream grpc_backend test.Echo Count; request_headers grpc_send 1 end; request_headers pause; grpc_close continue";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
["GET /t", "GET /t", "GET /t"]
--- response_body eval
["served\n", "served\n", "served\n"]
--- grep_error_log eval
qr/trailing "x-peer: [^"]+"/
--- grep_error_log_out eval
qr/\A(trailing "x-peer: ipv4:127\.0\.0\.1:\d+")\n\1\n\1\n\z/
--- no_error_log
[error]



=== TEST 16: calls from a root context's on_tick, and from the callback of another call
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
    }
--- config
    location /t {
        proxy_wasm testbed "configure tick_period 100; tick tick_period 0; tick grpc_call grpc_backend test.Echo Echo from%20tick 5000; root_grpc_response count; root_grpc_response when_count 1 grpc_call grpc_backend test.Echo Echo from%20callback 5000";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- response_body
served
--- wait: 1
--- error_log eval
[qr/grpc call #\d+ response: status 0, 9 bytes "from tick"/,
 qr/grpc call #\d+ response: status 0, 13 bytes "from callback"/]
--- no_error_log
[error]



=== TEST 17: a bad target or request is PARSE_FAILURE with the reason logged; calls cannot start before workers run
--- config
    location /t {
        proxy_wasm testbed "request_headers grpc_call http://a/b test.Echo Echo hi 5000; request_headers grpc_call grpc_backend test.Echo Echo hi 5000 bad%20name=1; request_headers grpc_stream unknown_upstream_name test.Echo Echo";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- response_body
served
--- error_log eval
[qr/grpc call to "http:\/\/a\/b": "a\/b" is not an upstream name, host:port or unix:path/,
 qr/grpc call to http:\/\/a\/b failed: ParseFailure/,
 qr/invalid metadata name "bad name"/,
 qr/grpc stream to unknown_upstream_name failed: ParseFailure/]



=== TEST 18: a request that ends while its call is in flight cancels the call: no callback comes
--- config
    location /t {
        proxy_wasm testbed "request_headers grpc_call grpc_backend test.Echo Sleep 300 5000; request_headers respond 204";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- error_code: 204
--- wait: 0.6
--- no_error_log eval
[qr/grpc call #\d+ response/, "[error]"]



=== TEST 19: a Rust-SDK filter authorizes requests through a gRPC service (as grpc_auth_random does in Envoy)
--- config
    location /t {
        proxy_wasm grpc_auth "grpc_backend";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/auth;
    }
--- request eval
["GET /t", "GET /t", "GET /t"]
--- more_headers eval
["X-User: alice", "X-User: bob", "X-User: alice\nContent-Type: application/grpc"]
--- error_code eval
[200, 403, 200]
--- response_body eval
["served to welcome alice\n", "bob may not\n", "served to welcome alice\n"]
--- no_error_log
[error]



=== TEST 20: the authorizing filter answers a gRPC request it denies with a gRPC status
--- config
    location /t {
        proxy_wasm grpc_auth "grpc_backend";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
POST /t
--- more_headers
X-User: mallory
Content-Type: application/grpc
--- error_code: 200
--- response_headers
grpc-status: 7
grpc-message: mallory may not
--- no_error_log
[error]



=== TEST 21: a GOAWAY that refuses the stream: UNAVAILABLE
--- config
    location /t {
        proxy_wasm testbed "request_headers grpc_call 127.0.0.1:$TEST_NGINX_H2_PORT hostile.H Goaway hi 5000; request_headers pause; grpc_response continue";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- response_body
served
--- error_log eval
qr/grpc call #\d+ response: status 14 "the server sent GOAWAY/



=== TEST 22: RST_STREAM REFUSED_STREAM: UNAVAILABLE
--- config
    location /t {
        proxy_wasm testbed "request_headers grpc_call 127.0.0.1:$TEST_NGINX_H2_PORT hostile.H Refused hi 5000; request_headers pause; grpc_response continue";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- response_body
served
--- error_log eval
qr/grpc call #\d+ response: status 14 "stream reset by the server: REFUSED_STREAM/



=== TEST 23: RST_STREAM CANCEL: CANCELLED
--- config
    location /t {
        proxy_wasm testbed "request_headers grpc_call 127.0.0.1:$TEST_NGINX_H2_PORT hostile.H Cancel hi 5000; request_headers pause; grpc_response continue";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- response_body
served
--- error_log eval
qr/grpc call #\d+ response: status 1 "stream reset by the server: CANCEL/



=== TEST 24: RST_STREAM PROTOCOL_ERROR: INTERNAL
--- config
    location /t {
        proxy_wasm testbed "request_headers grpc_call 127.0.0.1:$TEST_NGINX_H2_PORT hostile.H Protocol hi 5000; request_headers pause; grpc_response continue";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- response_body
served
--- error_log eval
qr/grpc call #\d+ response: status 13 "stream reset by the server: PROTOCOL_ERROR/



=== TEST 25: the connection lost in the middle of a response: UNAVAILABLE
--- config
    location /t {
        proxy_wasm testbed "request_headers grpc_call 127.0.0.1:$TEST_NGINX_H2_PORT hostile.H Drop hi 5000; request_headers pause; grpc_response continue";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- response_body
served
--- error_log eval
qr/grpc call #\d+ response: status 14 "/



=== TEST 26: a response that ends without trailers: UNKNOWN
--- config
    location /t {
        proxy_wasm testbed "request_headers grpc_call 127.0.0.1:$TEST_NGINX_H2_PORT hostile.H NoTrailers hi 5000; request_headers pause; grpc_response continue";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- response_body
served
--- error_log eval
qr/grpc call #\d+ response: status 2 "the response ended without a status/



=== TEST 27: an HTTP 503 without grpc-status: UNAVAILABLE
--- config
    location /t {
        proxy_wasm testbed "request_headers grpc_call 127.0.0.1:$TEST_NGINX_H2_PORT hostile.H Http503 hi 5000; request_headers pause; grpc_response continue";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- response_body
served
--- error_log eval
qr/grpc call #\d+ response: status 14 "HTTP status 503/



=== TEST 28: a compressed message that was not asked for: INTERNAL
--- config
    location /t {
        proxy_wasm testbed "request_headers grpc_call 127.0.0.1:$TEST_NGINX_H2_PORT hostile.H Compressed hi 5000; request_headers pause; grpc_response continue";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- response_body
served
--- error_log eval
qr/grpc call #\d+ response: status 13 "a compressed response message: no compression was asked for/



=== TEST 29: trailers in the middle of a message: INTERNAL
--- config
    location /t {
        proxy_wasm testbed "request_headers grpc_call 127.0.0.1:$TEST_NGINX_H2_PORT hostile.H Truncated hi 5000; request_headers pause; grpc_response continue";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- response_body
served
--- error_log eval
qr/grpc call #\d+ response: status 13 "the response ended within a message/



=== TEST 30: a target whose connection ended gets a new one: the next call works; the server's small window and frame size are honoured
--- config
    location /t {
        proxy_wasm testbed "request_headers grpc_call 127.0.0.1:$TEST_NGINX_H2_PORT hostile.H Goaway hi 5000; request_headers pause; grpc_response count; grpc_response when_count 1 grpc_call 127.0.0.1:$TEST_NGINX_H2_PORT hostile.H Count big:200000 5000; grpc_response when_count 2 continue";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- response_body
served
--- error_log eval
[qr/grpc call #\d+ response: status 14 "the server sent GOAWAY/,
 qr/grpc call #\d+ response: status 0, 6 bytes "200000"/]



=== TEST 31: a call from on_response_headers holds the response until its answer continues it
--- config
    location /t {
        proxy_wasm testbed "response_headers grpc_call grpc_backend test.Echo Echo late 5000; response_headers pause; grpc_response add_header response x-grpc answered; grpc_response continue response";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- response_headers
x-grpc: answered
--- response_body
served
--- error_log eval
qr/grpc call #\d+ response: status 0, 4 bytes "late"/
--- no_error_log
[error]
