# The Proxy-Wasm ABI versions, and host functions answering bad input
# with a status instead of crashing.
use Test::Nginx::Socket 'no_plan';
run_tests();

__DATA__

=== TEST 1: an ABI 0.1.0 filter (Rust SDK 0.1)
--- main_config
    wasm {
        module abi_v1 $TEST_NGINX_FILTERS/abi_v1.wasm "the vm";
    }
--- config
    location / {
        proxy_wasm abi_v1 "the plugin";
        empty_gif;
    }
--- request
GET /t
--- response_headers
x-abi-v1: the plugin
--- error_log
abi_v1 vm configuration: "the vm"
abi_v1 plugin configuration: "the plugin"
abi_v1 on_request_headers: 5 headers
abi_v1 missing header: None
abi_v1 path: /t
abi_v1 on_response_headers: 4 headers
--- no_error_log
[error]



=== TEST 2: an ABI 0.2.0 filter
--- main_config
    wasm {
        module abi020 $TEST_NGINX_WAT/abi_0_2_0.wat;
    }
--- config
    location / {
        proxy_wasm abi020;
        empty_gif;
    }
--- request
GET /
--- response_headers
x-abi: 0.2.0
--- error_log
abi 0.2.0 on_request_headers



=== TEST 3: bad pointers, sizes, types and values get error statuses
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
    }
--- config
    location / {
        proxy_wasm testbed "request_headers bad_pointers; request_headers response_map";
        empty_gif;
    }
--- request
GET /
--- error_code: 200
--- error_log
proxy_log with a bad message: 6
proxy_log with a bad level: 2
get_buffer_bytes with a bad type: 2
get_buffer_bytes with a bad out-pointer: 6
get_header_map_pairs with a bad map: 2
get_header_map_pairs with a bad out-pointer: 6
get_header_map_value with a bad key: 6
add_header_map_value with a bad value: 6
add_header_map_value with an invalid name: 2
add_header_map_value with an invalid value: 2
send_local_response with bad headers: 2
response headers map: 2



=== TEST 4: host functions not supported yet: UNIMPLEMENTED, and one warning
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
    }
--- config
    location / {
        proxy_wasm testbed "request_headers unimplemented";
        empty_gif;
    }
--- request eval
["GET /", "GET /"]
--- grep_error_log eval
qr/proxy_clear_route_cache (again )?returned \d+|\[warn\] .*host function proxy_clear_route_cache is not supported: returning UNIMPLEMENTED/
--- grep_error_log_out eval
qr/^\[warn\] .*not supported: returning UNIMPLEMENTED
proxy_clear_route_cache returned 12
proxy_clear_route_cache again returned 12
proxy_clear_route_cache returned 12
proxy_clear_route_cache again returned 12
$/



=== TEST 5: proxy_set_effective_context
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
    }
--- config
    location / {
        proxy_wasm testbed "request_headers effective_context 4242; request_headers effective_context self";
        empty_gif;
    }
--- request
GET /
--- error_log
set_effective_context(4242) returned 2
set_effective_context(self) returned 0



=== TEST 6: a guest allocator that changes headers is stopped
--- main_config
    wasm {
        module m $TEST_NGINX_WAT/allocator_calls_host.wat;
    }
--- config
    location / {
        proxy_wasm m;
        empty_gif;
    }
--- request
GET /
--- error_code: 500
--- error_log
host function proxy_add_header_map_value called from the guest allocator
