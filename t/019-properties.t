# Properties: Envoy's attributes with Envoy's encodings (checked as the
# Rust SDK's get_property returns them: length, bytes, and the integer of
# 8-byte values), nginx variables under ngx., values filters store, static
# properties (proxy_wasm_property), and $proxy_wasm_property_<name>.
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

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
my $certs = test_certificates(qw(server client));

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
        proxy_wasm testbed "request_headers prop_map request%00headers; request_headers prop request%00headers_bytes; request_headers prop request%00headers%00X-MULTI; request_headers prop request%00headers%00host; request_headers prop request%00headers%00x-none";
        empty_gif;
    }
--- request
GET /t
--- more_headers
X-Multi: a
X-Other: o
X-Multi: b
--- grep_error_log eval
qr/property request\.headers.*?(?=, client| text=)/
--- grep_error_log_out
property request.headers: 7 entries, 154 bytes
property request.headers entry ":method: GET"
property request.headers entry ":path: /t"
property request.headers entry ":scheme: http"
property request.headers entry ":authority: localhost"
property request.headers entry "x-multi: a,b"
property request.headers entry "x-other: o"
property request.headers entry "connection: close"
property request.headers_bytes: len=8 hex=5600000000000000
property request.headers.X-MULTI: len=3 hex=612c62
property request.headers.host: len=9 hex=6c6f63616c686f7374
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
        proxy_wasm testbed "request_headers prop response%00code; request_headers prop_map response%00headers; response_headers prop response%00code; response_headers prop response%00headers%00content-type; response_headers prop response%00code_details; response_headers prop_map response%00headers; response_headers prop response%00headers_bytes; log prop response%00size; log prop upstream%00request_attempt_count; log prop response%00backend_latency; log prop response%00total_size; log prop_map response%00trailers";
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
 'property response.headers: 3 entries, 82 bytes',
 'property response.headers entry ":status: 200"',
 'property response.headers entry "content-type: text/plain"',
 'property response.headers entry "content-length: 12"',
 'property response.headers_bytes: len=8 hex=3000000000000000',
 'property upstream.request_attempt_count: len=8 hex=0100000000000000',
 qr/property response\.backend_latency: len=8 hex=\w+ text="[^"]*" int=(0|\d+000000)\b/,
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
        proxy_wasm testbed "response_body at_end add_trailer grpc-status 5; response_body at_end add_trailer x-t t; log prop response%00grpc_status; log prop response%00trailers%00grpc-status; log prop_map response%00trailers";
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
--- error_log
property response.trailers: 2 entries, 40 bytes
property response.trailers entry "grpc-status: 5"
property response.trailers entry "x-t: t"
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
        proxy_wasm testbed "request_headers prop source%00address; request_headers prop source%00port; request_headers prop destination%00address; request_headers prop destination%00port; request_headers prop connection%00id; request_headers prop connection%00mtls; request_headers prop connection%00requested_server_name; request_headers prop connection%00tls_version; request_headers prop connection%00subject_peer_certificate; request_headers prop connection%00sha256_peer_certificate_digest; request_headers prop upstream%00address; request_headers prop upstream%00request_attempt_count; request_headers prop response%00backend_latency; request_headers prop connection%00peer_certificate";
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
 'property upstream.address: missing',
 'property upstream.request_attempt_count: len=8 hex=0000000000000000',
 'property response.backend_latency: missing',
 'property connection.peer_certificate: missing']



=== TEST 12: TLS: the connection's certificates, SNI and version; upstream address, port and TLS version
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1 ssl;
        server_name server.test;
        ssl_certificate $TEST_NGINX_CERTS/server.crt;
        ssl_certificate_key $TEST_NGINX_CERTS/server.key;
        ssl_client_certificate $TEST_NGINX_CERTS/ca.crt;
        ssl_verify_client optional;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {
            proxy_wasm testbed "request_headers prop connection%00mtls; request_headers prop connection%00requested_server_name; request_headers prop connection%00tls_version; request_headers prop connection%00subject_local_certificate; request_headers prop connection%00subject_peer_certificate; request_headers prop connection%00sha256_peer_certificate_digest; request_headers prop connection%00dns_san_peer_certificate; request_headers prop connection%00uri_san_peer_certificate; request_headers prop connection%00dns_san_local_certificate; request_headers prop connection%00uri_san_local_certificate; request_headers prop request%00scheme; request_headers prop connection%00peer_certificate";
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
 # "-----BEGIN%20CERTIFICATE-----%0A" (the line is too long for the rest)
 qr/property connection\.peer_certificate: len=\d{3} hex=2d2d2d2d2d424547494e25323043455254494649434154452d2d2d2d2d253041/,
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



=== TEST 17: ngx.<variable>: any nginx variable, in any case; unknown ones and ones without a value are NOT_FOUND, without an nginx error
--- http_config
    map $http_x_tier $tier_name {
        default basic;
        gold    premium;
    }
    geo $remote_addr $network {
        default         outside;
        127.0.0.0/8     loopback;
    }
--- config
    location /t {
        proxy_wasm testbed "request_headers prop ngx%00remote_addr; request_headers prop ngx%00REQUEST_METHOD; request_headers prop ngx%00arg_a; request_headers prop ngx%00http_x_tier; request_headers prop ngx%00cookie_c; request_headers prop ngx%00tier_name; request_headers prop ngx%00network; request_headers prop ngx%00arg_nope; request_headers prop ngx%00nope_var; request_headers prop ngx; request_headers prop ngx%00a%00b";
        empty_gif;
    }
--- request
GET /t?a=1
--- more_headers
X-Tier: gold
Cookie: c=yum
--- error_log
property ngx.remote_addr: len=9 hex=3132372e302e302e31 text="127.0.0.1"
property ngx.REQUEST_METHOD: len=3 hex=474554 text="GET"
property ngx.arg_a: len=1 hex=31 text="1"
property ngx.http_x_tier: len=4 hex=676f6c64 text="gold"
property ngx.cookie_c: len=3 hex=79756d text="yum"
property ngx.tier_name: len=7 hex=7072656d69756d text="premium"
property ngx.network: len=8 hex=6c6f6f706261636b text="loopback"
property ngx.arg_nope: missing
property ngx.nope_var: missing
property ngx: missing
property ngx.a.b: missing
--- no_error_log
unknown "nope_var" variable



=== TEST 18: setting ngx.<variable>: changeable ones change for nginx; immutable and unknown ones return an error status and log why
--- config
    location /t {
        set $x "before";
        proxy_wasm testbed "request_headers set_prop ngx%00x after; request_headers prop ngx%00x; request_headers set_prop ngx%00args z=9; request_headers set_prop ngx%00remote_addr 10.0.0.1; request_headers set_prop ngx%00nope 1; request_headers set_prop ngx%00arg_a 2; request_headers prop ngx%00remote_addr";
        add_header X-Var $x always;
        add_header X-Args $args always;
        empty_gif;
    }
--- request
GET /t?a=1
--- response_headers
X-Var: after
X-Args: z=9
--- error_log
set_property ngx.x returned 0
property ngx.x: len=5 hex=6166746572 text="after"
set_property ngx.args returned 0
set_property ngx.remote_addr returned 2
cannot set ngx.remote_addr: the variable is not changeable
set_property ngx.nope returned 1
cannot set ngx.nope: no such variable
set_property ngx.arg_a returned 2
cannot set ngx.arg_a: the variable is not changeable
property ngx.remote_addr: len=9 hex=3132372e302e302e31 text="127.0.0.1"



=== TEST 19: stored properties: the request's filters share them (NUL or dotted paths alike), nginx reads them as $proxy_wasm_property_<name>, an empty value removes one
--- config
    location /t {
        proxy_wasm testbed "request_headers set_prop tenant acme; request_headers set_prop_sdk route%00tier gold; request_headers set_prop gone x; request_headers set_prop gone -; response_headers prop tenant";
        proxy_wasm testbed "request_headers prop tenant; request_headers prop route.tier; request_headers prop route%00tier; request_headers prop gone; log prop tenant";
        add_header X-Tenant $proxy_wasm_property_tenant always;
        add_header X-Missing "[$proxy_wasm_property_nope]" always;
        empty_gif;
    }
--- request
GET /t
--- response_headers
X-Tenant: acme
X-Missing: []
--- grep_error_log eval
qr/(set_property|property) (tenant|route\.tier|gone)[^,]*?(?=,| while)/
--- grep_error_log_out
set_property tenant returned 0
set_property gone returned 0
set_property gone returned 0
property tenant: len=4 hex=61636d65 text="acme"
property route.tier: len=4 hex=676f6c64 text="gold"
property route.tier: len=4 hex=676f6c64 text="gold"
property gone: missing
property tenant: len=4 hex=61636d65 text="acme"
property tenant: len=4 hex=61636d65 text="acme"



=== TEST 20: stored properties are per request
--- config
    location /t {
        proxy_wasm testbed "request_headers prop seen; request_headers set_prop seen yes";
        empty_gif;
    }
--- request eval
["GET /t", "GET /t"]
--- grep_error_log eval
qr/property seen: [^,]*/
--- grep_error_log_out
property seen: missing
property seen: missing



=== TEST 21: attributes are read-only: setting one is BAD_ARGUMENT and says why; bad paths too
--- config
    location /t {
        proxy_wasm testbed "request_headers set_prop request%00path /x; request_headers set_prop plugin_name x; request_headers set_prop a%00%00b x; request_headers prop request%00path";
        empty_gif;
    }
--- request
GET /t
--- error_log
set_property request.path returned 2
cannot set request.path: the property is read-only
set_property plugin_name returned 2
cannot set plugin_name: the property is read-only
set_property a..b returned 2
invalid property path
property request.path: len=2 hex=2f74 text="/t"



=== TEST 22: a root context has its own store, which its requests do not see
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm "vm_start tick_period 50";
    }
--- config
    location /t {
        proxy_wasm testbed "configure set_prop boot 1; tick prop boot; request_headers prop boot";
        empty_gif;
    }
--- request
GET /t
--- wait: 0.2
--- error_log
set_property boot returned 0
property boot: len=1 hex=31 text="1"
property boot: missing



=== TEST 23: proxy_wasm_property: static properties per location, inherited and overridden, with variables; node is xds.node, as a whole a Node message
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm "vm_start tick_period 50";
    }
--- http_config
    proxy_wasm_property xds.node.id gw-1;
    proxy_wasm_property node.cluster edge;
    proxy_wasm_property tenant default;
--- config
    proxy_wasm_property tenant "t-$arg_t";
    location /t {
        proxy_wasm_property route_name r1;
        proxy_wasm testbed "configure prop xds.node.id; request_headers prop node%00id; request_headers prop xds%00node%00cluster; request_headers prop xds%00node; request_headers prop tenant; request_headers prop xds%00route_name; request_headers prop route_name; request_headers prop xds%00cluster_name; request_headers set_prop tenant mine; request_headers prop tenant; tick prop node.id; tick prop tenant";
        empty_gif;
    }
--- request
GET /t?t=42
--- wait: 0.2
--- error_log
property xds.node.id: len=4 hex=67772d31 text="gw-1"
property node.id: len=4 hex=67772d31 text="gw-1"
property xds.node.cluster: len=4 hex=65646765 text="edge"
property xds.node: len=12 hex=0a0467772d31120465646765
property tenant: len=4 hex=742d3432 text="t-42"
property xds.route_name: len=2 hex=7231 text="r1"
property route_name: len=2 hex=7231 text="r1"
property xds.cluster_name: missing
property tenant: len=4 hex=6d696e65 text="mine"
property node.id: len=4 hex=67772d31 text="gw-1"
property tenant: len=7 hex=64656661756c74 text="default"



=== TEST 24: proxy_wasm_property cannot define nginx's attributes
--- config
    location /t {
        proxy_wasm_property request.path /x;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*property "request\.path" is one of nginx's attributes and cannot be defined in \S+nginx\.conf:\d+$/m



=== TEST 25: proxy_wasm_property: bad paths and duplicates
--- config
    location /t {
        proxy_wasm_property a..b x;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid property path "a\.\.b": segments are joined by single dots in \S+nginx\.conf:\d+$/m



=== TEST 26: proxy_wasm_property: a path defined twice at one level
--- config
    location /t {
        proxy_wasm_property tenant a;
        proxy_wasm_property tenant b;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*property "tenant" is already defined here in \S+nginx\.conf:\d+$/m



=== TEST 27: bad pointers and sizes: INVALID_MEMORY_ACCESS, never a crash; an empty path is NOT_FOUND
--- config
    location /t {
        proxy_wasm testbed "request_headers bad_property_pointers";
        empty_gif;
    }
--- request
GET /t
--- error_log
get_property with a bad path: 6
get_property with a bad out-pointer: 6
set_property with a bad value: 6
get_property with an empty path: 1



=== TEST 28: an AssemblyScript SDK filter: its root context is chosen by plugin_root_id (the module's name); single-segment dotted names
--- main_config
    wasm {
        module as_properties $TEST_NGINX_FILTERS/as_properties.wasm;
    }
--- config
    location /t {
        proxy_wasm as_properties "request.path request.headers.x-a plugin_root_id ngx.arg_a tenant=acme tenant source.port";
        empty_gif;
    }
--- request
GET /t?a=1
--- more_headers
X-A: yes
--- error_log eval
["as property request.path: len=6 hex=2f743f613d31",
 "as property request.headers.x-a: len=3 hex=796573",
 "as property plugin_root_id: len=13 hex=61735f70726f70657274696573",
 "as property ngx.arg_a: len=1 hex=31",
 "as set_property tenant returned 0",
 "as property tenant: len=4 hex=61636d65",
 qr/as property source\.port: len=8 hex=[0-9a-f]{4}000000000000/]



=== TEST 29: properties and headers in on_done and on_delete: the request is still there
--- config
    location /t {
        proxy_wasm testbed "done prop source%00address; done prop ngx%00remote_addr; done prop request%00path; done prop response%00code; done set_prop ngx%00x 1; delete prop connection%00mtls; done prop_map response%00headers; done add_header response x-late 1";
        set $x 0;
        empty_gif;
    }
--- request
GET /t
--- error_log eval
[qr/property source\.address: len=\d+ hex=\w+ text="127\.0\.0\.1:\d+"/,
 'property ngx.remote_addr: len=9 hex=3132372e302e302e31 text="127.0.0.1"',
 'property request.path: len=2 hex=2f74 text="/t"',
 qr/property response\.code: len=8 hex=c800000000000000/,
 'set_property ngx.x returned 0',
 'property connection.mtls: len=1 hex=00',
 qr/property response\.headers: \d entries/]
