# Foreign functions (proxy_call_foreign_function): Envoy's compress and
# uncompress (zlib), from a tick as the Go SDK's foreign_call_on_tick
# example calls them and from requests; unknown names are NOT_FOUND.
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

default_modules(testbed => '$TEST_NGINX_FILTERS/testbed.wasm');

run_tests();

__DATA__

=== TEST 1: compress from on_tick, as the Go SDK's foreign_call_on_tick: zlib's format, every tick
--- config
    location / {
        proxy_wasm testbed "configure tick_period 100; tick foreign compress hello%20world!";
        empty_gif;
    }
--- request
GET /
--- wait: 0.5
--- grep_error_log eval
qr/foreign compress: \d+ bytes, starting \w+/
--- grep_error_log_out eval
qr/\A(foreign compress: 20 bytes, starting 789ccb48\n){3,}\z/
--- no_error_log
[warn]



=== TEST 2: what compress made, uncompress gives back, from a request
--- config
    location / {
        proxy_wasm testbed "request_headers foreign_roundtrip the%20same%20text,%20the%20same%20text,%20the%20same%20text";
        empty_gif;
    }
--- request
GET /
--- error_code: 200
--- error_log
roundtrip 43 bytes -> 26 -> "the same text, the same text, the same text"
--- no_error_log
[warn]



=== TEST 3: uncompress of what is not zlib's is SERIALIZATION_FAILURE, with the reason logged; the request goes on
--- config
    location / {
        proxy_wasm testbed "request_headers foreign uncompress not-zlib";
        empty_gif;
    }
--- request
GET /
--- error_code: 200
--- error_log eval
[qr/\[warn\] .*foreign function uncompress: not zlib data/,
 qr/foreign uncompress failed: SerializationFailure/]



=== TEST 4: an unknown function is NOT_FOUND, logged once with the functions there are
--- config
    location / {
        proxy_wasm testbed "request_headers foreign declare_nothing x";
        empty_gif;
    }
--- request eval
["GET /", "GET /"]
--- error_code eval
[200, 200]
--- grep_error_log eval
qr/foreign function "declare_nothing" is not provided by this host \(it has: compress, uncompress, declare_property\): returning NOT_FOUND|foreign declare_nothing failed: NotFound/
--- grep_error_log_out
foreign function "declare_nothing" is not provided by this host (it has: compress, uncompress, declare_property): returning NOT_FOUND
foreign declare_nothing failed: NotFound
foreign declare_nothing failed: NotFound



=== TEST 7: declare_property: a read-only property is set once, read back by filters and $proxy_wasm_property_*; declaring it twice is BAD_ARGUMENT
--- config
    location / {
        proxy_wasm testbed "configure declare tenant 1 1; configure declare tenant 0; request_headers set_prop tenant acme; request_headers set_prop tenant other; request_headers prop tenant; request_headers set_prop free one; request_headers set_prop free two; request_headers prop free";
        add_header X-Tenant $proxy_wasm_property_tenant;
        empty_gif;
    }
--- request
GET /
--- error_code: 200
--- response_headers
X-Tenant: acme
--- error_log eval
[qr/declared tenant/,
 qr/foreign function declare_property: property "tenant" is declared already/,
 qr/declare tenant failed: BadArgument/,
 qr/set_property tenant returned 0/,
 qr/\[error\].*cannot set tenant: the property is read-only/,
 qr/set_property tenant returned 2/,
 qr/property tenant: len=4 .*text="acme"/,
 qr/property free: len=3 .*text="two"/]



=== TEST 8: declare_property with arguments that are not DeclarePropertyArguments, or an unknown type: BAD_ARGUMENT, logged
--- config
    location / {
        proxy_wasm testbed "request_headers foreign declare_property garbage; request_headers declare odd 0 9";
        empty_gif;
    }
--- request
GET /
--- error_code: 200
--- error_log eval
[qr/foreign function declare_property: the arguments are not a DeclarePropertyArguments/,
 qr/foreign declare_property failed: BadArgument/,
 qr/foreign function declare_property: an unknown property type/,
 qr/declare odd failed: BadArgument/]
