# Response bodies through the chain: per chunk with end_of_stream right,
# buffered by pausing filters within wasm_response_body_buffers, changed
# with a consistent Content-Length and ETag; response trailers.
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

default_modules(testbed => '$TEST_NGINX_FILTERS/testbed.wasm');

# Upstreams: a sized file, the same chunked, and the same close-delimited.
our $Backend = <<'END';
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        root $TEST_NGINX_HTML_DIR;
        location /chunked/ {
            alias $TEST_NGINX_HTML_DIR/;
            sub_filter_types *;
            sub_filter nothing nothing;
        }
        location /close/ {
            alias $TEST_NGINX_HTML_DIR/;
            chunked_transfer_encoding off;
            sub_filter_types *;
            sub_filter nothing nothing;
        }
        location /gzip/ {
            alias $TEST_NGINX_HTML_DIR/;
            gzip on;
            gzip_types text/plain;
            gzip_min_length 1;
        }
    }
END

our $Big = ">>> big.txt\n" . ("0123456789" x 10000);

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('http_config', $Backend) unless defined $block->http_config;
});

run_tests();

__DATA__

=== TEST 1: per chunk, end_of_stream on the last (sized upstream)
--- config
    location / {
        proxy_buffering off;
        proxy_buffer_size 4k;
        proxy_wasm testbed "trace";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- user_files eval: $::Big
--- request
GET /big.txt
--- response_body_like: ^(0123456789){10000}$
--- response_headers
Content-Length: 100000
--- grep_error_log eval
qr/on_response_body \d+ bytes, end_of_stream \w+/
--- grep_error_log_out eval
qr/^(on_response_body \d+ bytes, end_of_stream false\n){2,}on_response_body \d+ bytes, end_of_stream true\n$/



=== TEST 2: a chunked upstream
--- config
    location / {
        proxy_buffering off;
        proxy_wasm testbed "trace";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- user_files eval: $::Big
--- request
GET /chunked/big.txt
--- response_body_like: ^(0123456789){10000}$
--- grep_error_log eval
qr/on_response_body \d+ bytes, end_of_stream \w+/
--- grep_error_log_out eval
qr/^(on_response_body \d+ bytes, end_of_stream false\n)+on_response_body \d+ bytes, end_of_stream true\n$/



=== TEST 3: a close-delimited upstream
--- config
    location / {
        proxy_buffering off;
        proxy_wasm testbed "trace";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- user_files eval: $::Big
--- request
GET /close/big.txt
--- response_body_like: ^(0123456789){10000}$
--- error_log eval
qr/on_response_body \d+ bytes, end_of_stream true/



=== TEST 4: pausing buffers the whole body; a new body gets its own Content-Length and a weak ETag
--- config
    location / {
        proxy_wasm testbed "response_body pause_until_end; response_body log_body_size; response_body at_end replace_body replaced";
    }
--- user_files eval: $::Big
--- request
GET /big.txt
--- response_body chomp
replaced
--- response_headers_like
Content-Length: 8
ETag: W/".*"
--- grep_error_log eval
qr/response_body \(\d+ bytes, end_of_stream true\)/
--- grep_error_log_out
response_body (100000 bytes, end_of_stream true)



=== TEST 5: a body changed as it streams goes chunked, with a weak ETag
--- config
    location / {
        output_buffers 1 4k;
        proxy_wasm testbed "response_body upper_body";
    }
--- user_files
>>> letters.txt
abcdefghij
--- request
GET /letters.txt
--- response_body
ABCDEFGHIJ
--- response_headers_like
Content-Length: 11
ETag: W/".*"



=== TEST 6: many chunks changed as they stream
--- config
    location / {
        proxy_buffering off;
        proxy_buffer_size 4k;
        proxy_wasm testbed "response_body replace_body x";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- user_files eval: $::Big
--- request
GET /big.txt
--- response_body_like: ^x{2,}$
--- response_headers
!Content-Length
Transfer-Encoding: chunked



=== TEST 7: prepend, append and a range
--- config
    location /prepend {
        proxy_wasm testbed "response_body prepend_body [";
        return 200 "body";
    }
    location /append {
        proxy_wasm testbed "response_body at_end append_body ]";
        return 200 "body";
    }
    location /range {
        proxy_wasm testbed "response_body splice_body 1 2 OD";
        return 200 "body";
    }
--- request eval
["GET /prepend", "GET /append", "GET /range"]
--- response_body eval
["[body", "body]", "bODy"]
--- response_headers eval
["Content-Length: 5", "Content-Length: 5", "Content-Length: 4"]



=== TEST 8: more than wasm_response_body_buffers held fails the request
--- config
    location / {
        output_buffers 1 4k;
        wasm_response_body_buffers 2 1k;
        proxy_wasm testbed "response_body pause_until_end";
    }
--- user_files eval: $::Big
--- request
GET /big.txt
--- error_code: 500
--- error_log eval
qr/\[error\] .*bytes of response body held, over wasm_response_body_buffers \(2048\): failing the request/



=== TEST 9: ... or passes the data on, with wasm_response_body_overflow pass
--- config
    location / {
        output_buffers 1 4k;
        wasm_response_body_buffers 2 1k;
        wasm_response_body_overflow pass;
        proxy_wasm testbed "response_body pause_until_end";
    }
--- user_files eval: $::Big
--- request
GET /big.txt
--- error_code: 200
--- response_body_like: ^(0123456789){10000}$
--- error_log
over wasm_response_body_buffers (2048): passing it on



=== TEST 10: gzip in the same location compresses what the filters let through
--- config
    location / {
        gzip on;
        gzip_types text/plain;
        gzip_min_length 1;
        proxy_wasm testbed "response_body log_body; response_body upper_body";
        return 200 "compress me";
    }
--- request eval
["GET /", "GET /"]
--- more_headers
Accept-Encoding: gzip
--- response_headers
Content-Encoding: gzip
--- error_log
response_body (11 bytes, end_of_stream true): "compress me"



=== TEST 11: without gzip accepted, the client gets the filtered body
--- config
    location / {
        gzip on;
        gzip_types text/plain;
        gzip_min_length 1;
        proxy_wasm testbed "response_body upper_body";
        return 200 "compress me";
    }
--- request
GET /
--- response_body chomp
COMPRESS ME



=== TEST 12: a gzip body from the upstream passes as it is
--- config
    location / {
        proxy_wasm testbed "response_headers get_header response content-encoding; response_body log_body_size";
        proxy_set_header Accept-Encoding gzip;
        proxy_http_version 1.1;
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- user_files eval: $::Big
--- request
GET /gzip/big.txt
--- more_headers
Accept-Encoding: gzip
--- response_headers
Content-Encoding: gzip
--- error_log eval
[qr/response header content-encoding: "gzip"/, qr/response_body \(\d+ bytes, end_of_stream true\)/]



=== TEST 13: a response held in on_response_headers until another request continues it
--- config
    location /held {
        proxy_wasm testbed "response_headers pause; response_headers remember; response_headers add_header response x-held yes";
        return 200 "held\n";
    }
    location /release {
        proxy_wasm testbed "request_headers continue_remembered response";
        empty_gif;
    }
--- concurrent
--- request eval
["GET /held", "GET /release"]
--- error_code eval
[200, 200]
--- response_body eval
["held\n", qr/GIF/]
--- response_headers eval
["x-held: yes", ""]



=== TEST 14: a response held on its body until another request continues it
--- config
    location /held {
        proxy_wasm testbed "response_body pause; response_body remember";
        return 200 "held body\n";
    }
    location /release {
        proxy_wasm testbed "request_headers continue_remembered response";
        empty_gif;
    }
--- concurrent
--- request eval
["GET /held", "GET /release"]
--- error_code eval
[200, 200]
--- response_body eval
["held body\n", qr/GIF/]



=== TEST 15: ... or closes it
--- config
    location /held {
        proxy_wasm testbed "response_headers pause; response_headers remember";
        return 200 "held\n";
    }
    location /close {
        proxy_wasm testbed "request_headers close_remembered";
        empty_gif;
    }
--- concurrent
--- request eval
["GET /held", "GET /close"]
--- error_code eval
["", 200]



=== TEST 16: ... or answers it
--- config
    location /held {
        proxy_wasm testbed "response_headers pause; response_headers remember";
        return 200 "held\n";
    }
    location /answer {
        proxy_wasm testbed "request_headers respond_remembered 401 not%20you";
        empty_gif;
    }
--- concurrent
--- request eval
["GET /held", "GET /answer"]
--- error_code eval
[401, 200]
--- response_body eval
["not you", qr/GIF/]



=== TEST 17: a local response from on_response_headers replaces the response
--- config
    location / {
        proxy_wasm testbed "response_headers respond 418 teapot x-a:1";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- user_files eval: $::Big
--- request
GET /big.txt
--- error_code: 418
--- response_body chomp
teapot
--- response_headers
x-a: 1
Content-Length: 6
!ETag



=== TEST 18: a local response from on_response_body replaces the response
--- config
    location / {
        proxy_wasm testbed "response_body respond 451 blocked";
    }
--- user_files eval: $::Big
--- request
GET /big.txt
--- error_code: 451
--- response_body chomp
blocked



=== TEST 19: a body changed after its headers went out with Content-Length closes the connection
--- config
    location / {
        proxy_buffering off;
        proxy_buffer_size 4k;
        proxy_wasm testbed "response_body at_end append_body more";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- user_files eval: $::Big
--- request
GET /big.txt
--- response_headers
Content-Length: 100000
--- error_log
a filter changed the length of a response body after its headers went out with Content-Length 100000: closing the connection



=== TEST 20: trailers added at the end of a body
--- config
    location / {
        proxy_wasm testbed "response_body at_end add_trailer x-checksum abc";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- user_files
>>> small.txt
small
--- request
GET /chunked/small.txt
--- raw_response_like eval
qr/\r\n0\r\nx-checksum: abc\r\n\r\n$/



=== TEST 21: trailers nginx adds reach on_response_trailers
--- config
    location / {
        add_trailer x-nginx-trailer yes;
        proxy_wasm testbed "trace; response_trailers dump_trailers; response_trailers add_trailer x-wasm-trailer too";
        proxy_pass http://127.0.0.1:$TEST_NGINX_RAND_PORT_1;
    }
--- user_files
>>> small.txt
small
--- request
GET /chunked/small.txt
--- raw_response_like eval
qr/\r\n0\r\nx-nginx-trailer: yes\r\nx-wasm-trailer: too\r\n\r\n$/
--- error_log eval
[qr/on_response_body 6 bytes, end_of_stream false/, qr/on_response_trailers 1 trailers/, qr/trailer "x-nginx-trailer: yes"/]



=== TEST 22: HTTP/2
--- http2
--- config
    location / {
        proxy_wasm testbed "response_body pause_until_end; response_body at_end replace_body over%20h2";
        return 200 "body";
    }
--- request
GET /
--- error_code: 200
--- response_body chomp
over h2
