# HTTP calls (proxy_http_call): from request and root contexts, several in
# flight, the response's headers, body and trailers, keep-alive, and how
# failures reach the filter.
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

default_modules(testbed => '$TEST_NGINX_FILTERS/testbed.wasm');

# A test CA and a certificate for svc.test, for calls over TLS.
test_certificates('svc');

our $Services = <<'END';
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location /ok {
            add_header X-Service ok;
            return 200 "hello from $request_method $request_uri\n";
        }
        location /echo {
            # proxy_pass reads the body: $request_body is set for the headers
            proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/inner;
            add_header X-Host $http_host;
            add_header X-Conn "$connection:$connection_requests";
            add_header X-Body $request_body;
            add_header X-Extra $http_x_extra;
        }
        location /inner {
            return 200 "len=$content_length\n";
        }
        location /slow {
            limit_rate 1;
            return 200 "0123456789";
        }
        location /trickle {
            # about a second: the headers count against the rate
            limit_rate 200;
            return 200 "trickled\n";
        }
        location /reset {
            return 444;
        }
        location /status {
            return 503 "unavailable\n";
        }
        location /chunked {
            # sub_filter drops the length: the body goes chunked, trailers too
            sub_filter unused used;
            sub_filter_types *;
            add_trailer X-Checksum abc123;
            return 200 "a chunked body\n";
        }
    }
END

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('http_config', $Services) unless defined $block->http_config;
});

run_tests();

__DATA__

=== TEST 1: a call from on_request_headers holds the request until the response continues it
--- config
    location /t {
        proxy_wasm testbed "request_headers call 127.0.0.1:$TEST_NGINX_RAND_PORT_1 GET /ok?a=1; request_headers pause; call_response continue";
        return 200 "served\n";
    }
    location = /gif {
        proxy_wasm testbed "request_headers call 127.0.0.1:$TEST_NGINX_RAND_PORT_1 GET /ok?a=1; request_headers pause; call_response continue";
        empty_gif;
    }
--- request
GET /gif
--- error_code: 200
--- error_log eval
[qr/dispatched call #(\d+) to 127\.0\.0\.1:\d+/,
 qr/call #\d+ response: \d+ headers, 23 bytes, 0 trailers/,
 qr/call #\d+ header ":status: 200"/,
 qr/call #\d+ header "x-service: ok"/,
 qr/call #\d+ body "hello from GET \/ok\?a=1"/,
 qr/call #\d+ status 0 ""/]



=== TEST 2: several calls in flight from one context; each response comes once
--- config
    location /t {
        proxy_wasm testbed "request_headers call 127.0.0.1:$TEST_NGINX_RAND_PORT_1 GET /ok?n=1; request_headers call 127.0.0.1:$TEST_NGINX_RAND_PORT_1 GET /ok?n=2; request_headers call 127.0.0.1:$TEST_NGINX_RAND_PORT_1 GET /status; request_headers pause; call_response count; call_response when_count 3 continue";
        empty_gif;
    }
--- request
GET /t
--- error_code: 200
--- grep_error_log eval
qr/call #\d+ (body|header ":status)[^,]*/
--- grep_error_log_out eval
qr/\A(?=[\s\S]*hello from GET \/ok\?n=1)(?=[\s\S]*hello from GET \/ok\?n=2)(?=[\s\S]*header ":status: 503")/
--- error_log
count 3



=== TEST 3: a POST with a body, Host from :authority, extra headers; the connection is kept for the next call
--- config
    location /t {
        proxy_wasm testbed "request_headers call 127.0.0.1:$TEST_NGINX_RAND_PORT_1 POST /echo svc.test 0 payload x-extra=1; request_headers pause; call_response continue";
        empty_gif;
    }
--- request eval
["GET /t", "GET /t"]
--- error_log eval
[qr/call #\d+ header "x-host: svc\.test"/,
 qr/call #\d+ header "x-body: payload"/,
 qr/call #\d+ header "x-extra: 1"/,
 qr/call #\d+ body "len=7"/,
 qr/call #\d+ header "x-conn: (\d+):1"/,
 qr/call #\d+ header "x-conn: (\d+):2"/]



=== TEST 4: an empty :authority is accepted, as Envoy does: Host names the target
--- config
    location /t {
        proxy_wasm testbed "request_headers call 127.0.0.1:$TEST_NGINX_RAND_PORT_1 GET /echo '' 0; request_headers pause; call_response continue";
        empty_gif;
    }
--- request
GET /t
--- error_code: 200
--- error_log eval
[qr/call #\d+ header ":status: 200"/,
 qr/call #\d+ header "x-host: 127\.0\.0\.1:\d+"/]
--- no_error_log
is required



=== TEST 5: a call from on_tick comes back to the root context; requests that start and end meanwhile leave it alone
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm "vm_start tick_period 100";
    }
--- config
    location /t {
        proxy_wasm testbed "tick call 127.0.0.1:$TEST_NGINX_RAND_PORT_1 GET /ok?from=tick; tick call 127.0.0.1:$TEST_NGINX_RAND_PORT_1 GET /trickle; tick tick_period 0";
        empty_gif;
    }
--- request eval
["GET /t", "GET /t"]
--- request_delay: 0.3
--- wait: 1.5
--- error_log eval
[qr/proxy_wasm "testbed" #1: call #\d+ body "hello from GET \/ok\?from=tick"/,
 qr/proxy_wasm "testbed" #1: call #\d+ body "trickled"/]



=== TEST 6: failures call back with no headers and are logged with why: refused, timeout, reset
--- config
    location /t {
        proxy_wasm testbed "request_headers call 127.0.0.1:1 GET /; request_headers call 127.0.0.1:$TEST_NGINX_RAND_PORT_1 GET /slow localhost 200; request_headers call 127.0.0.1:$TEST_NGINX_RAND_PORT_1 GET /reset; request_headers pause; call_response count; call_response when_count 3 continue";
        empty_gif;
    }
--- request
GET /t
--- error_code: 200
--- error_log eval
[qr/http call #\d+ to "127\.0\.0\.1:1" failed: refused/,
 qr/http call #\d+ to "127\.0\.0\.1:\d+" failed: timeout/,
 qr/http call #\d+ to "127\.0\.0\.1:\d+" failed: reset/,
 qr/call #\d+ response: 0 headers, 0 bytes, 0 trailers/,
 qr/call #\d+ status 11 "refused"/,
 qr/call #\d+ status 11 "timeout"/,
 qr/call #\d+ status 11 "reset"/,
 "count 3"]



=== TEST 7: bad calls are BAD_ARGUMENT: :authority missing, a target that is no address
--- config
    location /t {
        proxy_wasm testbed "request_headers call 127.0.0.1:$TEST_NGINX_RAND_PORT_1 GET /ok -; request_headers call 127.0.0.1:$TEST_NGINX_RAND_PORT_1 - /ok; request_headers call no-such-cluster GET /; request_headers call 127.0.0.1:99999 GET /";
        empty_gif;
    }
--- request
GET /t
--- error_log eval
[qr/http call to "127\.0\.0\.1:\d+": :authority is required/,
 qr/http call to "127\.0\.0\.1:\d+": :method is required/,
 qr/http call to "no-such-cluster": a host name, and no resolver is configured/,
 qr/http call to "127\.0\.0\.1:99999": invalid port/,
 "dispatch to no-such-cluster failed: BadArgument"]



=== TEST 8: a client that goes away cancels the request's calls
--- config
    location /t {
        proxy_wasm testbed "request_headers call 127.0.0.1:$TEST_NGINX_RAND_PORT_1 GET /slow; request_headers pause";
        empty_gif;
    }
--- request
GET /t
--- abort
--- timeout: 0.3
--- wait: 0.5
--- error_log eval
[qr/client prematurely closed connection.*request: "GET \/slow HTTP\/1\.1"/]
--- no_error_log eval
[qr/call #\d+ response/, qr/failed: /]



=== TEST 9: an upstream{} block's name is a cluster: round robin, a failing server skipped (and marked, as for proxy_pass), backup servers
--- http_config eval
$::Services . <<'END';
    upstream backend {
        server 127.0.0.1:1;
        server 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    upstream standby {
        server 127.0.0.1:1;
        server 127.0.0.1:$TEST_NGINX_RAND_PORT_1 backup;
    }
    upstream nothing {
        server 127.0.0.1:1 down;
    }
END
--- config
    location /t {
        proxy_wasm testbed "request_headers call backend GET /ok?via=backend; request_headers call standby GET /ok?via=standby; request_headers call nothing GET /ok; request_headers pause; call_response count; call_response when_count 3 continue";
        empty_gif;
    }
--- request eval
["GET /t", "GET /t"]
--- error_log eval
[qr/call #\d+ body "hello from GET \/ok\?via=backend"/,
 qr/call #\d+ body "hello from GET \/ok\?via=standby"/,
 qr/http call #\d+ to "nothing" failed: refused \(no live upstreams\)/,
 qr/http call to "standby": server 127\.0\.0\.1:1 failed, trying the next one/]



=== TEST 10: Envoy's http_auth_random, as a Rust SDK filter: an even byte from the httpbin cluster lets the request through
--- main_config
    wasm {
        module auth_random $TEST_NGINX_FILTERS/auth_random.wasm;
    }
--- http_config
    upstream httpbin {
        server 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location = /bytes/1 {
            return 200 "b";
        }
    }
--- config
    location /t {
        proxy_wasm auth_random;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/bytes/1;
    }
--- request
GET /t
--- error_code: 200
--- response_headers
Powered-By: proxy-wasm
--- response_body chomp
b
--- error_log
Access granted.



=== TEST 11: http_auth_random: an odd byte answers 403
--- main_config
    wasm {
        module auth_random $TEST_NGINX_FILTERS/auth_random.wasm;
    }
--- http_config
    upstream httpbin {
        server 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location = /bytes/1 {
            return 200 "a";
        }
    }
--- config
    location /t {
        proxy_wasm auth_random;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/bytes/1;
    }
--- request
GET /t
--- error_code: 403
--- response_headers
Powered-By: proxy-wasm
--- response_body
Access forbidden.
--- error_log
Access forbidden.



=== TEST 12: https calls: TLS with SNI, the certificate checked against tls_trusted_certificate and the host; a kept TLS connection serves the next call
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        tls_trusted_certificate $TEST_NGINX_CERTS/ca.crt;
    }
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_2 ssl;
        server_name svc.test;
        ssl_certificate $TEST_NGINX_CERTS/svc.crt;
        ssl_certificate_key $TEST_NGINX_CERTS/svc.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {
            add_header X-Tls "$ssl_protocol $ssl_server_name $connection_requests";
            return 200 "secure\n";
        }
    }
--- config
    location /t {
        proxy_wasm testbed "request_headers call 127.0.0.1:$TEST_NGINX_RAND_PORT_2 GET /s svc.test 0 - :scheme=https; request_headers call 127.0.0.1:$TEST_NGINX_RAND_PORT_2 GET /s other.test 0 - :scheme=https; request_headers pause; call_response count; call_response when_count 2 continue; call_response when_count 4 continue";
        empty_gif;
    }
--- request eval
["GET /t", "GET /t"]
--- error_log eval
[qr/call #\d+ header "x-tls: TLSv1\.3 svc\.test 1"/,
 qr/call #\d+ header "x-tls: TLSv1\.3 svc\.test 2"/,
 qr/call #\d+ body "secure"/,
 qr/http call #\d+ to "127\.0\.0\.1:\d+" failed: tls \(certificate does not match the host\)/,
 qr/call #\d+ status 11 "tls"/]



=== TEST 13: https calls: a server the trusted certificates do not vouch for fails, unless tls_verify_cert is off
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        tls_verify_cert off;
    }
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_2 ssl;
        ssl_certificate $TEST_NGINX_CERTS/svc.crt;
        ssl_certificate_key $TEST_NGINX_CERTS/svc.key;
        location / {
            return 200 "unchecked\n";
        }
    }
--- config
    location /t {
        proxy_wasm testbed "request_headers call 127.0.0.1:$TEST_NGINX_RAND_PORT_2 GET /s svc.test 0 - :scheme=https; request_headers pause; call_response continue";
        empty_gif;
    }
--- request
GET /t
--- error_log eval
[qr/call #\d+ body "unchecked"/]



=== TEST 14: https calls: without tls_trusted_certificate, the system's CAs do not know the test CA
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_2 ssl;
        ssl_certificate $TEST_NGINX_CERTS/svc.crt;
        ssl_certificate_key $TEST_NGINX_CERTS/svc.key;
        location / {
            return 200 "unchecked\n";
        }
    }
--- config
    location /t {
        proxy_wasm testbed "request_headers call 127.0.0.1:$TEST_NGINX_RAND_PORT_2 GET /s svc.test 0 - :scheme=https; request_headers pause; call_response continue";
        empty_gif;
    }
--- request
GET /t
--- error_log eval
[qr/certificate verify error: \(\d+:unable to get local issuer certificate\)/,
 qr/http call #\d+ to "127\.0\.0\.1:\d+" failed: tls \(certificate verify failed\)/]



=== TEST 15: socket_read_timeout bounds each read of a call
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        socket_read_timeout 300ms;
    }
--- config
    location /t {
        proxy_wasm testbed "request_headers call 127.0.0.1:$TEST_NGINX_RAND_PORT_1 GET /slow; request_headers pause; call_response continue";
        empty_gif;
    }
--- request
GET /t
--- error_code: 200
--- error_log eval
[qr/http call #\d+ to "127\.0\.0\.1:\d+" failed: timeout/]



=== TEST 16: a unix socket; a call made from on_http_call_response; a local response from it cancels the request's other calls
--- http_config eval
$::Services . <<'END';
    server {
        listen unix:$TEST_NGINX_SERVROOT/calls.sock;
        location / {
            return 200 "over unix $request_uri\n";
        }
    }
END
--- config
    location /t {
        proxy_wasm testbed "request_headers call unix:$TEST_NGINX_SERVROOT/calls.sock GET /first; request_headers call 127.0.0.1:$TEST_NGINX_RAND_PORT_1 GET /slow; request_headers pause; call_response count; call_response when_count 1 call unix:$TEST_NGINX_SERVROOT/calls.sock GET /second; call_response when_count 2 respond 403 chained";
        empty_gif;
    }
--- request
GET /t
--- error_code: 403
--- response_body chomp
chained
--- error_log eval
[qr/call #\d+ body "over unix \/first"/,
 qr/call #\d+ body "over unix \/second"/]
--- no_error_log eval
[qr/failed: /]



=== TEST 17: a call from on_response_headers holds the response until the call's response continues it
--- config
    location /t {
        proxy_wasm testbed "response_headers call 127.0.0.1:$TEST_NGINX_RAND_PORT_1 GET /ok?from=response; response_headers pause; call_response continue response; call_response add_header response x-checked yes";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/ok;
    }
--- request
GET /t
--- error_code: 200
--- response_headers
X-Checked: yes
--- response_body
hello from GET /ok
--- error_log eval
[qr/call #\d+ body "hello from GET \/ok\?from=response"/]



=== TEST 18: a root context's call in flight does not hold a worker that shuts down, and leaves no socket open
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm "vm_start tick_period 50";
    }
--- init
# a service that takes connections and never answers
use IO::Socket::INET;
our $Silent = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
    LocalPort => $ENV{TEST_NGINX_RAND_PORT_3}, Listen => 8, ReuseAddr => 1)
    or die "cannot listen: $!";
--- config
    location /t {
        proxy_wasm testbed "tick call 127.0.0.1:$TEST_NGINX_RAND_PORT_3 GET /never; tick tick_period 0";
        empty_gif;
    }
--- wait: 0.3
--- error_log eval
[qr/dispatched call #\d+/]
--- no_error_log eval
[qr/open socket/, qr/call #\d+ response/]



=== TEST 19: a name that does not resolve fails the call with "resolve"
--- http_config eval
$::Services . <<'END';
    resolver 127.0.0.1:1 ipv6=off;
    resolver_timeout 300ms;
END
--- config
    location /t {
        proxy_wasm testbed "request_headers call nowhere.test:80 GET /; request_headers pause; call_response continue";
        empty_gif;
    }
--- request
GET /t
--- error_code: 200
--- error_log eval
[qr/http call #\d+ to "nowhere\.test:80" failed: resolve/,
 qr/call #\d+ status 11 "resolve"/]



=== TEST 20: http_call_max_body_size caps a response's body; http_call_failure_log sets the level failures are logged at
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        http_call_max_body_size 10;
        http_call_failure_log warn;
    }
--- config
    location /t {
        proxy_wasm testbed "request_headers call 127.0.0.1:$TEST_NGINX_RAND_PORT_1 GET /ok; request_headers pause; call_response continue";
        empty_gif;
    }
--- request
GET /t
--- error_code: 200
--- error_log eval
[qr/\[warn\] .*http call #\d+ to "127\.0\.0\.1:\d+" failed: oversize/,
 qr/call #\d+ status 11 "oversize"/]



=== TEST 21: on_configure: a call waits for the workers (INTERNAL_FAILURE during the configuration check), then works there
--- config
    location /t {
        proxy_wasm testbed "configure call 127.0.0.1:$TEST_NGINX_RAND_PORT_1 GET /ok?from=configure";
        empty_gif;
    }
--- wait: 0.3
--- error_log eval
[qr/proxy_wasm "testbed" #1: call #\d+ body "hello from GET \/ok\?from=configure"/]



=== TEST 22: host names resolve with the location's resolver in requests, with wasm{}'s outside them
--- init
# a DNS server that answers every A question with 127.0.0.1
use IO::Socket::INET;
use POSIX ();
my $dns = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
    LocalPort => $ENV{TEST_NGINX_RAND_PORT_4}, Proto => 'udp') or die "udp: $!";
our $DnsPid = fork() // die "fork: $!";
if ($DnsPid == 0) {
    alarm 10;
    while (my $from = $dns->recv(my $query, 512)) {
        my ($id) = unpack('n', $query);
        my $answer = pack('n6', $id, 0x8180, 1, 1, 0, 0) . substr($query, 12)
            . pack('n3 N n C4', 0xc00c, 1, 1, 60, 4, 127, 0, 0, 1);
        $dns->send($answer, 0, $from);
    }
    POSIX::_exit(0);
}
close $dns;
END { kill 'TERM', $DnsPid if $DnsPid }
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm "vm_start tick_period 100";
        resolver 127.0.0.1:$TEST_NGINX_RAND_PORT_4 ipv6=off;
    }
--- http_config eval
$::Services . <<'END';
    resolver 127.0.0.1:$TEST_NGINX_RAND_PORT_4 ipv6=off;
END
--- config
    location /t {
        proxy_wasm testbed "request_headers call svc.test:$TEST_NGINX_RAND_PORT_1 GET /ok?from=request; request_headers pause; call_response continue; tick call svc.test:$TEST_NGINX_RAND_PORT_1 GET /ok?from=tick; tick tick_period 0";
        empty_gif;
    }
--- request
GET /t
--- wait: 0.3
--- error_log eval
[qr/call #\d+ body "hello from GET \/ok\?from=request"/,
 qr/call #\d+ body "hello from GET \/ok\?from=tick"/]



=== TEST 23: a chunked response with trailers; calls from on_request_body and on_response_body
--- config
    location /t {
        proxy_wasm testbed "request_body at_end call 127.0.0.1:$TEST_NGINX_RAND_PORT_1 GET /chunked; request_body pause_until_end; request_body at_end pause; response_body at_end call 127.0.0.1:$TEST_NGINX_RAND_PORT_1 GET /ok?from=response_body; response_body pause_until_end; response_body at_end pause; call_response count; call_response when_count 1 continue; call_response when_count 2 continue response";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/ok;
    }
--- request
POST /t
some body
--- error_code: 200
--- response_body
hello from POST /ok
--- error_log eval
[qr/call #\d+ body "a chunked body"/,
 qr/call #\d+ trailer "x-checksum: abc123"/,
 qr/call #\d+ response: \d+ headers, 15 bytes, 1 trailers/,
 qr/call #\d+ body "hello from GET \/ok\?from=response_body"/]
