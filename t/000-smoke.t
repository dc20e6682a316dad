use Test::Nginx::Socket 'no_plan';
run_tests();

__DATA__

=== TEST 1: a filter answers a request
--- main_config
    wasm {
        module hello $TEST_NGINX_FILTERS/hello.wasm;
    }
--- config
    location / {
        proxy_wasm hello "Hi there";
        return 200 "ok";
    }
    location /hello {
        proxy_wasm hello "Hi there";
        empty_gif;
    }
--- request
GET /hello
--- error_code: 200
--- response_body
Hi there
--- response_headers
x-answered-by: hello.wasm
x-powered-by: ngx_proxy_wasm
--- no_error_log
[error]
