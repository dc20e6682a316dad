# The shared key-value store (proxy_get_shared_data, proxy_set_shared_data)
# in shm_kv zones: CAS as the spec says, zones by key prefix, eviction
# (slru, lru, none), values kept across workers and reloads, and a counter
# that many concurrent requests on several workers increment exactly.
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

workers(2);

run_tests();

__DATA__

=== TEST 1: CAS: absent, stored unconditionally, a stale CAS is refused, the right one accepted
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        shm_kv * 64k;
    }
--- config
    location / {
        proxy_wasm testbed "request_headers kv_get k; request_headers kv_set k one; request_headers kv_get k; request_headers kv_set_cas k two 1; request_headers kv_get k; request_headers kv_set_cas k three 0; request_headers kv_get k; request_headers kv_set k four 0; request_headers kv_get k; request_headers kv_set k - ; request_headers kv_get k";
        empty_gif;
    }
--- request
GET /
--- grep_error_log eval
qr/kv_(get|set|set_cas) k[^,]*/
--- grep_error_log_out eval
qr/^kv_get k: missing
kv_set k returned 0
kv_get k: "one" cas (\d+)
kv_set_cas k returned 8
kv_get k: "one" cas \1
kv_set_cas k returned 0
kv_get k: "three" cas (\d+)
kv_set k returned 0
kv_get k: "four" cas (\d+)
kv_set k returned 0
kv_get k: missing
$/
--- no_error_log
[error]



=== TEST 2: a CAS for an absent key creates it (as Envoy); CAS values change with every store and are never 0
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        shm_kv * 64k;
    }
--- config
    location / {
        proxy_wasm testbed "request_headers kv_set k a 12345; request_headers kv_get k; request_headers kv_set k a; request_headers kv_get k";
        empty_gif;
    }
--- request
GET /
--- grep_error_log eval
qr/kv_(get|set) k[^,]*/
--- grep_error_log_out eval
qr/^kv_set k returned 0
kv_get k: "a" cas ([1-9]\d*)
kv_set k returned 0
kv_get k: "a" cas (?!\1\n)[1-9]\d*
$/



=== TEST 3: keys go to the zone their "name/" prefix names, every other key to "*"
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        shm_kv * 64k;
        shm_kv small 32k eviction=none;
    }
--- config
    location / {
        proxy_wasm testbed "request_headers kv_fill small/k 1 100 1000; request_headers kv_fill other/k 1 20 1000; request_headers kv_count other/k 1 20; request_headers kv_get nothing/";
        empty_gif;
    }
--- request
GET /
--- error_log eval
[
    # small is full after some 1000-byte values; "*" (other/ goes there) is not
    qr/kv_fill small\/k1..100: small\/k\d+ failed with 10/,
    qr/\[error\] .*set_shared_data "small\/k\d+" failed: its zone is full/,
    qr/kv_fill other\/k1..20: all stored/,
    qr/kv_count other\/k1..20: 20 present/,
    qr/kv_get nothing\/: missing/,
]



=== TEST 4: no zone for a key: NOT_FOUND, and the log says how to declare one
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        shm_kv named 32k;
    }
--- config
    location / {
        proxy_wasm testbed "request_headers kv_set named/a 1; request_headers kv_set a 1; request_headers kv_get a; request_headers kv_get named/a";
        empty_gif;
    }
--- request
GET /
--- error_log eval
[
    qr/kv_set named\/a returned 0/,
    qr/kv_set a returned 1/,
    qr/\[error\] .*set_shared_data "a" failed: no shm_kv zone holds it: declare "shm_kv \* <size>;"/,
    qr/kv_get a: missing/,
    qr/kv_get named\/a: "1"/,
]



=== TEST 5: eviction=lru: a full zone drops the least recently used keys; a key read meanwhile stays
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        shm_kv * 32k eviction=lru;
    }
--- config
    location /fill {
        proxy_wasm testbed "request_headers kv_fill k 1 10 1000";
        empty_gif;
    }
    location /more {
        proxy_wasm testbed "request_headers kv_get k1; request_headers kv_fill k 11 18 1000; request_headers kv_count k 1 1; request_headers kv_count k 2 10; request_headers kv_count k 11 18";
        empty_gif;
    }
--- request eval
["GET /fill", "GET /more"]
--- error_log eval
[
    qr/kv_fill k11..18: all stored/,
    # k1 was read after k2..k10 were stored: it outlived some of them
    qr/kv_count k1..1: 1 present/,
    qr/kv_count k2..10: [0-8] present/,
    qr/kv_count k11..18: 8 present/,
]
--- no_error_log
[error]



=== TEST 6: eviction=slru (the default): values of another size make room when their own size has none
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        shm_kv * 32k;
    }
--- config
    location / {
        proxy_wasm testbed "request_headers kv_fill small 1 400 10; request_headers kv_fill big 1 40 1500; request_headers kv_fill small 401 800 10; request_headers kv_count small 791 800; request_headers kv_count big 36 40";
        empty_gif;
    }
--- request
GET /
--- error_log eval
[
    qr/kv_fill small1..400: all stored/,
    qr/kv_fill big1..40: all stored/,
    qr/kv_fill small401..800: all stored/,
    qr/kv_count small791..800: 10 present/,
    # smalls took the pages of the least recently used bigs
    qr/kv_count big36..40: [1-4] present \[.*40\]/,
]
--- no_error_log
[error]



=== TEST 7: eviction=slru makes room for an entry of a size from entries of that size: small ones stay when big ones come
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        shm_kv * 64k eviction=slru;
    }
--- config
    location / {
        proxy_wasm testbed "request_headers kv_fill small 1 100 10; request_headers kv_fill big 1 40 1500; request_headers kv_count small 1 100; request_headers kv_count big 31 40";
        empty_gif;
    }
--- request
GET /
--- error_log eval
[
    qr/kv_fill big1..40: all stored/,
    qr/kv_count small1..100: 100 present/,
    qr/kv_count big31..40: 10 present/,
]



=== TEST 8: eviction=lru, the same: the oldest entries go, the small ones, until a page is free
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        shm_kv * 64k eviction=lru;
    }
--- config
    location / {
        proxy_wasm testbed "request_headers kv_fill small 1 100 10; request_headers kv_fill big 1 40 1500; request_headers kv_count small 1 100; request_headers kv_count big 31 40";
        empty_gif;
    }
--- request
GET /
--- error_log eval
[
    qr/kv_fill big1..40: all stored/,
    qr/kv_count small1..100: [1-6]?\d present/,
    qr/kv_count big31..40: 10 present/,
]



=== TEST 9: eviction=none: a full zone refuses new values and keeps the old ones; a value larger than the zone is refused
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        shm_kv * 32k eviction=none;
    }
--- config
    location / {
        proxy_wasm testbed "request_headers kv_fill k 1 100 1000; request_headers kv_count k 1 5; request_headers kv_fill huge 1 1 100000; request_headers kv_fill k 1 1 1000";
        empty_gif;
    }
--- request
GET /
--- error_log eval
[
    qr/kv_fill k1..100: k\d+ failed with 10/,
    qr/kv_count k1..5: 5 present/,
    qr/kv_fill huge1..1: huge1 failed with 10/,
    # a value of the same size is replaced in place
    qr/kv_fill k1..1: all stored/,
]



=== TEST 10: a counter incremented by many concurrent requests on two workers (CAS retries) ends exactly right
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        shm_kv counters 64k;
    }
--- config
    location /incr {
        proxy_wasm testbed "request_headers kv_incr counters/hits";
        empty_gif;
    }
    location /count {
        proxy_wasm testbed "request_headers kv_respond counters/hits";
        empty_gif;
    }
--- load: 600 12 GET /incr
--- request
GET /count
--- response_body: 600
--- log_eval
# both workers counted
my %pids = map { $_ => 1 } /(\d+)#\d+: \S+ proxy_wasm "testbed" #\d+: kv_incr/g;
keys %pids == 2
--- timeout: 60



=== TEST 11: values are shared by the workers and outlive a reload (same zone name and size)
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        shm_kv keep 64k;
    }
--- config
    location /set {
        proxy_wasm testbed "request_headers kv_set keep/a kept; request_headers respond 200 set";
    }
    location /get {
        proxy_wasm testbed "request_headers kv_respond keep/a";
    }
--- request
GET /set
--- response_body: set
--- reload_config
    location /set {
        proxy_wasm testbed "request_headers respond 200 reloaded";
    }
    location /get {
        proxy_wasm testbed "request_headers kv_respond keep/a";
    }
--- reload_response_like eval
[qr/set/, qr/reloaded/]
--- request_after_reload
GET /get
--- error_code_after_reload: 200



=== TEST 12: configuration errors: one line with the file, the line and the cause
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        shm_kv * 64k eviction=fifo;
    }
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid eviction policy "fifo", it must be "slru", "lru" or "none" in .*nginx\.conf:\d+/



=== TEST 13: a zone smaller than 8 pages
--- main_config
    wasm {
        shm_kv tiny 4k;
    }
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*zone "tiny" is too small: it must be at least 32k in .*nginx\.conf:\d+/



=== TEST 14: a duplicate zone
--- main_config
    wasm {
        shm_kv a 64k;
        shm_kv a 64k;
    }
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*duplicate kv zone "a" in .*nginx\.conf:\d+/



=== TEST 15: a name with a slash cannot be a key prefix
--- main_config
    wasm {
        shm_kv a/b 64k;
    }
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid zone name "a\/b": it may not hold "\/", quotes, backslashes, spaces or control characters in .*nginx\.conf:\d+/



=== TEST 16: shared data while the configuration is checked (on_configure): no failure, nothing stored
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        shm_kv * 64k;
    }
--- config
    location / {
        proxy_wasm testbed "configure kv_incr started; request_headers kv_respond started";
    }
--- request
GET /
--- response_body_like: ^[12]$
--- no_error_log
[error]
