# Properties: Envoy's attributes with Envoy's encodings (checked as the
# Rust SDK's get_property returns them: length, bytes, and the integer of
# 8-byte values), nginx variables under ngx., values filters store, static
# properties (proxy_wasm_property), and $proxy_wasm_property_<name>.
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;
use File::Temp qw(tempdir);

default_modules(testbed => '$TEST_NGINX_FILTERS/testbed.wasm');

our $Upstream = <<'END';
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location / {
            add_header Grpc-Status $arg_grpc;
            return 200 "upstream $request_uri\n";
        }
    }
END

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('http_config', $Upstream) unless defined $block->http_config;
});

# A test CA, a server and a client certificate, each with a DNS and a URI
# subject alternative name.
my $certs = tempdir(CLEANUP => 1);
$ENV{TEST_NGINX_CERTS} = $certs;

sub openssl {
    my $cmd = shift;
    system("openssl $cmd >/dev/null 2>&1") == 0 or die "openssl $cmd failed";
}

openssl("req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
        . "-keyout $certs/ca.key -out $certs/ca.crt -days 2 -subj '/CN=Test CA'");
for my $who (qw(server client)) {
    open my $ext, '>', "$certs/$who.ext" or die;
    print $ext "subjectAltName=DNS:$who.test,URI:spiffe://test/$who\n";
    close $ext;
    openssl("req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
            . "-keyout $certs/$who.key -out $certs/$who.csr "
            . "-subj '/O=ngx_proxy_wasm/CN=$who.test'");
    openssl("x509 -req -in $certs/$who.csr -CA $certs/ca.crt -CAkey $certs/ca.key "
            . "-CAcreateserial -days 2 -extfile $certs/$who.ext -out $certs/$who.crt");
}

# Envoy's sha256_peer_certificate_digest: the hex SHA-256 of the DER
my $fingerprint = `openssl x509 -in $certs/client.crt -noout -fingerprint -sha256`;
$fingerprint =~ s/.*=//s;
$fingerprint =~ s/[:\s]//g;
$ENV{TEST_NGINX_CLIENT_SHA256} = lc $fingerprint;

run_tests();

__DATA__

=== TEST 1: request attributes by NUL-separated paths: strings raw
--- config
    location /t {
        proxy_wasm testbed "request_headers prop request%00path; request_headers prop request%00url_path; request_headers prop request%00query; request_headers prop request%00host; request_headers prop request%00scheme; request_headers prop request%00method; request_headers prop request%00referer; request_headers prop request%00useragent; request_headers prop request%00protocol; request_headers prop request%00id";
        empty_gif;
    }
--- request
GET /t/x?a=1&b=two
--- more_headers
Referer: http://ref.example/
User-Agent: agent/1.0
X-Request-Id: 7f1c
--- error_log
property request.path: len=14 hex=2f742f783f613d3126623d74776f text="/t/x?a=1&b=two"
property request.url_path: len=4 hex=2f742f78 text="/t/x"
property request.query: len=9 hex=613d3126623d74776f text="a=1&b=two"
property request.host: len=9 hex=6c6f63616c686f7374 text="localhost"
property request.scheme: len=4 hex=68747470 text="http"
property request.method: len=3 hex=474554 text="GET"
property request.referer: len=19 hex=687474703a2f2f7265662e6578616d706c652f text="http://ref.example/"
property request.useragent: len=9 hex=6167656e742f312e30 text="agent/1.0"
property request.protocol: len=8 hex=485454502f312e31 text="HTTP/1.1"
property request.id: len=4 hex=37663163 text="7f1c"



=== TEST 2: single-segment dotted names (as AssemblyScript filters write them) are the same properties
--- config
    location /t {
        proxy_wasm testbed "request_headers prop request.path; request_headers prop request.headers.x-a; request_headers prop plugin_root_id; request_headers prop ngx.arg_a";
        empty_gif;
    }
--- request
GET /t?a=1
--- more_headers
X-A: yes
--- error_log
property request.path: len=6 hex=2f743f613d31 text="/t?a=1"
property request.headers.x-a: len=3 hex=796573 text="yes"
property plugin_root_id: len=7 hex=74657374626564 text="testbed"
property ngx.arg_a: len=1 hex=31 text="1"



=== TEST 3: request.id without X-Request-Id is nginx's $request_id; absent headers and unknown attributes are NOT_FOUND
--- config
    location /t {
        proxy_wasm testbed "request_headers prop request%00id; request_headers prop request%00referer; request_headers prop request%00nope; request_headers prop request%00query; request_headers prop_status request%00nope";
        empty_gif;
    }
--- request
GET /t
--- error_log eval
[qr/property request\.id: len=32 hex=[0-9a-f]{64} text="[0-9a-f]{32}"/,
 "property request.referer: missing",
 "property request.nope: missing",
 "property request.query: missing",
 "get_property request.nope returned 1 (0 bytes)"]



=== TEST 4: request.headers: the pairs format, names lower-cased, repeated headers joined by commas
--- config
    location /t {
        proxy_wasm testbed "request_headers prop_map request%00headers; request_headers prop request%00headers%00X-MULTI; request_headers prop request%00headers%00host; request_headers prop request%00headers%00x-none";
        empty_gif;
    }
--- request
GET /t
--- more_headers
X-Multi: a
X-Other: o
X-Multi: b
--- grep_error_log eval
qr/property request\.headers.*?(?=, client)/
--- grep_error_log_out
property request.headers: 7 entries, 154 bytes
property request.headers entry ":method: GET"
property request.headers entry ":path: /t"
property request.headers entry ":scheme: http"
property request.headers entry ":authority: localhost"
property request.headers entry "x-multi: a,b"
property request.headers entry "x-other: o"
property request.headers entry "connection: close"
property request.headers.X-MULTI: len=3 hex=612c62 text="a,b"
property request.headers.host: len=9 hex=6c6f63616c686f7374 text="localhost"
property request.headers.x-none: missing



=== TEST 5: request.time and request.duration: int64 nanoseconds (8 bytes, little-endian)
--- config
    location /t {
        proxy_wasm testbed "request_headers prop request%00time; log prop request%00duration";
        empty_gif;
    }
--- request
GET /t
--- error_log eval
[qr/property request\.time: len=8 hex=[0-9a-f]{10}0*[0-9a-f]* text=".*" int=1[789]\d{11}000000\b/,
 qr/property request\.duration: len=8 hex=[0-9a-f]{16} text=".*" int=(0|\d+000000)\b/]



=== TEST 6: request.size (Content-Length) and request.total_size (the whole request)
--- config
    location /t {
        proxy_wasm testbed "request_headers prop request%00size; log prop request%00total_size";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
POST /t
hello
--- error_log eval
[qr/property request\.size: len=8 hex=0600000000000000 text=".*" int=6\b/,
 qr/property request\.total_size: len=8 hex=[4-9][0-9a-f]00000000000000 text=".*" int=\d\d\b/]



=== TEST 7: request.size of a chunked body: the bytes received
--- config
    location /t {
        proxy_wasm testbed "request_headers prop request%00size; log prop request%00size";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request eval
"POST /t\n5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n"
--- more_headers
Transfer-Encoding: chunked
--- grep_error_log eval
qr/property request\.size: len=8 hex=\w+/
--- grep_error_log_out
property request.size: len=8 hex=0000000000000000
property request.size: len=8 hex=0800000000000000



=== TEST 8: response attributes: NOT_FOUND (maps empty) before the response, then code, headers, sizes; code_details via_upstream
--- config
    location /t {
        proxy_wasm testbed "request_headers prop response%00code; request_headers prop_map response%00headers; response_headers prop response%00code; response_headers prop response%00headers%00content-type; response_headers prop response%00code_details; log prop response%00size; log prop response%00total_size; log prop_map response%00trailers";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- request
GET /t
--- response_body
upstream /t
--- error_log eval
["property response.code: missing",
 "property response.headers: 0 entries, 4 bytes",
 "property response.code: len=8 hex=c800000000000000",
 qr/int=200\b/,
 'property response.headers.content-type: len=10 hex=746578742f706c61696e text="text/plain"',
 'property response.code_details: len=12 hex=7669615f757073747265616d text="via_upstream"',
 qr/property response\.size: len=8 hex=0c00000000000000 text=".*" int=12\b/,
 qr/property response\.total_size: len=8 hex=[0-9a-f]{16} text=".*" int=[1-9]\d\d\b/,
 "property response.trailers: 0 entries, 4 bytes"]



=== TEST 9: response.code_details: a filter's local response gives its details; nginx's own, direct_response
--- config
    location /local {
        proxy_wasm testbed "request_headers respond_details 403 wasm_denied; log prop response%00code_details; log prop response%00code";
        empty_gif;
    }
    location /gif {
        proxy_wasm testbed "log prop response%00code_details; log prop response%00size";
        empty_gif;
    }
--- request eval
["GET /local", "GET /gif"]
--- error_code eval
[403, 200]
--- error_log eval
['property response.code_details: len=11 hex=7761736d5f64656e696564 text="wasm_denied"',
 qr/property response\.code: len=8 hex=9301000000000000 text=".*" int=403\b/,
 'property response.code_details: len=15 hex=6469726563745f726573706f6e7365 text="direct_response"',
 qr/property response\.size: len=8 hex=2b00000000000000 text=".*" int=43\b/]



=== TEST 10: response.grpc_status: the grpc-status trailer, else header, else the HTTP status in gRPC terms
--- config
    location /header {
        proxy_wasm testbed "log prop response%00grpc_status";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/?grpc=7;
    }
    location /trailer {
        proxy_wasm testbed "response_body at_end add_trailer grpc-status 5; log prop response%00grpc_status; log prop response%00trailers%00grpc-status";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/?grpc=7;
    }
    location /notfound {
        proxy_wasm testbed "log prop response%00grpc_status";
        return 404;
    }
    location /bogus {
        proxy_wasm testbed "log prop response%00grpc_status";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1/?grpc=x;
    }
--- request eval
["GET /header", "GET /trailer", "GET /notfound", "GET /bogus"]
--- error_code eval
[200, 200, 404, 200]
--- grep_error_log eval
qr/property response\.(grpc_status|trailers\.grpc-status): len=\d+ hex=\w+/
--- grep_error_log_out
property response.grpc_status: len=8 hex=0700000000000000
property response.grpc_status: len=8 hex=0500000000000000
property response.trailers.grpc-status: len=1 hex=35
property response.grpc_status: len=8 hex=0c00000000000000
property response.grpc_status: len=8 hex=ffffffffffffffff



=== TEST 11: source, destination and connection of a plaintext connection
--- config
    location /t {
        proxy_wasm testbed "request_headers prop source%00address; request_headers prop source%00port; request_headers prop destination%00address; request_headers prop destination%00port; request_headers prop connection%00id; request_headers prop connection%00mtls; request_headers prop connection%00requested_server_name; request_headers prop connection%00tls_version; request_headers prop connection%00subject_peer_certificate; request_headers prop connection%00sha256_peer_certificate_digest; request_headers prop upstream%00address";
        empty_gif;
    }
--- request
GET /t
--- error_log eval
[qr/property source\.address: len=\d+ hex=\w+ text="127\.0\.0\.1:\d+"/,
 qr/property source\.port: len=8 hex=\w+ text=".*" int=\d+\b/,
 'text="127.0.0.1:$TEST_NGINX_SERVER_PORT"',
 '" int=$TEST_NGINX_SERVER_PORT, client',
 qr/property connection\.id: len=8 hex=\w+ text=".*" int=\d+\b/,
 'property connection.mtls: len=1 hex=00',
 'property connection.requested_server_name: missing',
 'property connection.tls_version: missing',
 'property connection.subject_peer_certificate: missing',
 'property connection.sha256_peer_certificate_digest: missing',
 'property upstream.address: missing']



=== TEST 12: TLS: the connection's certificates, SNI and version; upstream address, port and TLS version
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1 ssl;
        server_name server.test;
        ssl_certificate $TEST_NGINX_CERTS/server.crt;
        ssl_certificate_key $TEST_NGINX_CERTS/server.key;
        ssl_client_certificate $TEST_NGINX_CERTS/ca.crt;
        ssl_verify_client optional;
        location / {
            proxy_wasm testbed "request_headers prop connection%00mtls; request_headers prop connection%00requested_server_name; request_headers prop connection%00tls_version; request_headers prop connection%00subject_local_certificate; request_headers prop connection%00subject_peer_certificate; request_headers prop connection%00sha256_peer_certificate_digest; request_headers prop connection%00dns_san_peer_certificate; request_headers prop connection%00uri_san_peer_certificate; request_headers prop connection%00dns_san_local_certificate; request_headers prop connection%00uri_san_local_certificate; request_headers prop request%00scheme";
            empty_gif;
        }
    }
--- config
    location /t {
        proxy_wasm testbed "response_headers prop upstream%00address; response_headers prop upstream%00port; response_headers prop upstream%00tls_version; response_headers prop connection%00mtls";
        proxy_pass https://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        proxy_ssl_server_name on;
        proxy_ssl_name server.test;
        proxy_ssl_certificate $TEST_NGINX_CERTS/client.crt;
        proxy_ssl_certificate_key $TEST_NGINX_CERTS/client.key;
        proxy_ssl_protocols TLSv1.3;
    }
--- request
GET /t
--- error_log eval
['property connection.mtls: len=1 hex=01',
 'text="server.test"',
 'property connection.tls_version: len=7 hex=544c5376312e33 text="TLSv1.3"',
 'property connection.subject_local_certificate: len=31 hex=434e3d7365727665722e746573742c4f3d6e67785f70726f78795f7761736d text="CN=server.test,O=ngx_proxy_wasm"',
 'property connection.subject_peer_certificate: len=31 hex=434e3d636c69656e742e746573742c4f3d6e67785f70726f78795f7761736d text="CN=client.test,O=ngx_proxy_wasm"',
 qr/property connection\.sha256_peer_certificate_digest: len=64 hex=\w+ text="$ENV{TEST_NGINX_CLIENT_SHA256}"/,
 'property connection.dns_san_peer_certificate: len=11 hex=636c69656e742e74657374 text="client.test"',
 'property connection.uri_san_peer_certificate: len=20 hex=7370696666653a2f2f746573742f636c69656e74 text="spiffe://test/client"',
 'property connection.dns_san_local_certificate: len=11 hex=7365727665722e74657374 text="server.test"',
 'text="spiffe://test/server"',
 'property request.scheme: len=5 hex=6874747073 text="https"',
 'text="127.0.0.1:$TEST_NGINX_RAND_PORT_1"',
 qr/property upstream\.port: len=8 hex=\w+ text=".*" int=\d+\b/,
 'property upstream.tls_version: len=7 hex=544c5376312e33 text="TLSv1.3"',
 'property connection.mtls: len=1 hex=00']



=== TEST 13: request.protocol of HTTP/1.0 and HTTP/2
--- config
    location /t {
        proxy_wasm testbed "request_headers prop request%00protocol";
        empty_gif;
    }
--- request
GET /t HTTP/1.0
--- error_log
property request.protocol: len=8 hex=485454502f312e30 text="HTTP/1.0"



=== TEST 14: request.protocol of HTTP/2
--- http2
--- config
    location /t {
        proxy_wasm testbed "request_headers prop request%00protocol";
        empty_gif;
    }
--- request
GET /t
--- error_log
property request.protocol: len=6 hex=485454502f32 text="HTTP/2"



=== TEST 15: plugin_name, plugin_root_id, plugin_vm_id: the module's name, in HTTP and root contexts
--- config
    location /t {
        proxy_wasm testbed "configure prop plugin_name; request_headers prop plugin_root_id; request_headers prop plugin_vm_id; request_headers prop plugin_name%00x";
        empty_gif;
    }
--- request
GET /t
--- error_log
property plugin_name: len=7 hex=74657374626564 text="testbed"
property plugin_root_id: len=7 hex=74657374626564 text="testbed"
property plugin_vm_id: len=7 hex=74657374626564 text="testbed"
property plugin_name.x: missing



=== TEST 16: outside requests (on_tick), request, connection and ngx. properties are NOT_FOUND
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm "vm_start tick_period 50";
    }
--- config
    location /t {
        proxy_wasm testbed "tick prop request%00path; tick prop source%00address; tick prop response%00code; tick prop ngx%00pid; tick prop_status request%00headers; tick set_prop ngx%00x 1";
        empty_gif;
    }
--- wait: 0.2
--- error_log
property request.path: missing
property source.address: missing
property response.code: missing
property ngx.pid: missing
get_property request.headers returned 1 (0 bytes)
set_property ngx.x returned 1
