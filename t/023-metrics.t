# Metrics: counters, gauges and histograms shared by the workers, Envoy's
# answers to bad calls, and proxy_wasm_metrics, the Prometheus endpoint.
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

default_modules(testbed => '$TEST_NGINX_FILTERS/testbed.wasm');

workers(2);

run_tests();

__DATA__

=== TEST 1: define, increment, record, get; Envoy's rules for bad calls
--- config
    location / {
        proxy_wasm testbed "request_headers metric 0 c; request_headers metric 1 g; request_headers metric 2 h; request_headers metric_incr c 5 log; request_headers metric_incr c -1; request_headers metric_incr c 0; request_headers metric_record c 2 log; request_headers metric_get c; request_headers metric_incr g 10; request_headers metric_incr g -3; request_headers metric_get g; request_headers metric_record g -4 log; request_headers metric_get g; request_headers metric_record h 3 log; request_headers metric_get h; request_headers metric_incr h 1; request_headers metric 3 bad; request_headers metric_get unknown; request_headers metric_incr unknown 1; request_headers metric_record unknown 1";
        empty_gif;
    }
--- request
GET /
--- grep_error_log eval
qr/(define|increment|record|get)_metric [^,\n]*/
--- grep_error_log_out eval
qr/^define_metric c returned 0 id (\d+)
define_metric g returned 0 id (\d+)
define_metric h returned 0 id (\d+)
increment_metric c 5 returned 0
increment_metric c -1 returned 2
increment_metric c 0 returned 2
record_metric c 2 returned 0
get_metric c returned 0 value 7
get_metric g returned 0 value 7
record_metric g -4 returned 0
get_metric g returned 0 value -4
record_metric h 3 returned 0
get_metric h returned 2 value 0
increment_metric h 1 returned 2
define_metric bad returned 2 id 0
get_metric unknown returned 1 value 0
increment_metric unknown 1 returned 1
record_metric unknown 1 returned 1
$/



=== TEST 2: the same name gives the same id; the same name with another type is refused, with the reason
--- config
    location / {
        proxy_wasm testbed "request_headers metric 0 m; request_headers metric 0 m; request_headers metric 1 m";
        empty_gif;
    }
--- request
GET /
--- grep_error_log eval
qr/define_metric [^,\n]*/
--- grep_error_log_out eval
qr/^define_metric m returned 0 id (\d+)
define_metric m returned 0 id \1
define_metric "m" failed: the name has another type
define_metric m returned 2 id 0
$/



=== TEST 3: counters, gauges and histograms updated by many requests on two workers, served to Prometheus
--- config
    location /hit {
        proxy_wasm testbed "configure metric 0 requests; configure metric 1 temperature; configure metric 2 latency; request_headers metric_incr requests 1; request_headers metric_record latency 3; request_headers metric_record latency 700; request_headers metric_record temperature -7";
        empty_gif;
    }
    location /metrics {
        proxy_wasm_metrics;
    }
--- load: 300 10 GET /hit
--- request
GET /metrics
--- response_headers
Content-Type: text/plain; version=0.0.4; charset=utf-8
--- response_body_like eval
qr/^\Q# TYPE testbed_latency histogram
testbed_latency_bucket{le="0.5"} 0
testbed_latency_bucket{le="1"} 0
testbed_latency_bucket{le="5"} 300
testbed_latency_bucket{le="10"} 300
testbed_latency_bucket{le="25"} 300
testbed_latency_bucket{le="50"} 300
testbed_latency_bucket{le="100"} 300
testbed_latency_bucket{le="250"} 300
testbed_latency_bucket{le="500"} 300
testbed_latency_bucket{le="1000"} 600
testbed_latency_bucket{le="2500"} 600
testbed_latency_bucket{le="5000"} 600
testbed_latency_bucket{le="10000"} 600
testbed_latency_bucket{le="30000"} 600
testbed_latency_bucket{le="60000"} 600
testbed_latency_bucket{le="300000"} 600
testbed_latency_bucket{le="600000"} 600
testbed_latency_bucket{le="1800000"} 600
testbed_latency_bucket{le="3600000"} 600
testbed_latency_bucket{le="+Inf"} 600
testbed_latency_sum 210900
testbed_latency_count 600
# TYPE testbed_requests counter
testbed_requests 300
# TYPE testbed_temperature gauge
testbed_temperature -7
\E# TYPE proxy_wasm_shm_free_bytes gauge\nproxy_wasm_shm_free_bytes\{kind="metrics",zone="metrics"\} \d+\n$/



=== TEST 4: names are prefixed by the filter and made valid for Prometheus; a value read by a filter is the sum of all workers'
--- config
    location /hit {
        proxy_wasm testbed "configure metric 0 a.b-c%3Dd; request_headers metric_incr a.b-c%3Dd 2 log";
        empty_gif;
    }
    location /get {
        proxy_wasm testbed "request_headers metric_respond a.b-c%3Dd";
    }
    location /metrics {
        proxy_wasm_metrics;
    }
--- load: 50 5 GET /hit
--- request eval
["GET /get", "GET /metrics"]
--- response_body_like eval
[qr/^100$/, qr/^# TYPE testbed_a_b_c_d counter\ntestbed_a_b_c_d 100\n# TYPE proxy_wasm_shm_free_bytes gauge\n/]
--- log_eval
# both workers counted
my %pids = map { $_ => 1 } /(\d+)#\d+: \S+ proxy_wasm "testbed" #\d+: increment_metric/g;
keys %pids == 2



=== TEST 5: metrics keep their values across a reload
--- config
    location /hit {
        proxy_wasm testbed "configure metric 0 requests; request_headers metric_incr requests 1";
        empty_gif;
    }
    location /get {
        proxy_wasm testbed "configure metric 0 requests; request_headers metric_respond requests";
    }
--- load: 20 2 GET /hit
--- request
GET /get
--- response_body: 20
--- reload_config
    location /get {
        proxy_wasm testbed "configure metric 0 requests; configure log info new%20workers; request_headers metric_respond requests";
    }
--- reload_response_like eval
[qr/\| 20$/, qr/\| 20$/]
--- error_log
new workers



=== TEST 6: the endpoint: HEAD, other methods refused; with no metric defined, the zones' statistics alone
--- config
    location /metrics {
        proxy_wasm_metrics;
    }
--- request eval
["HEAD /metrics", "POST /metrics\nx", "GET /metrics"]
--- error_code eval
[200, 405, 200]
--- response_body_like eval
[qr/^$/, qr/405/, qr/^# TYPE proxy_wasm_shm_free_bytes gauge\nproxy_wasm_shm_free_bytes\{kind="metrics",zone="metrics"\} \d+\n$/]



=== TEST 7: the zones' statistics: free bytes of each zone, evictions of key-value zones, items waiting in queues
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        shm_kv * 64k;
        shm_kv cache 32k eviction=lru;
        shm_queue jobs 64k;
    }
--- config
    location /fill {
        proxy_wasm testbed "request_headers kv_fill cache/k 1 40 1000; request_headers kv_set a 1; request_headers queue_register jobs; request_headers enqueue testbed jobs x; request_headers enqueue testbed jobs y";
        empty_gif;
    }
    location /metrics {
        proxy_wasm_metrics;
    }
--- request eval
["GET /fill", "GET /metrics"]
--- response_body_like eval
["", qr/^# TYPE proxy_wasm_shm_free_bytes gauge
proxy_wasm_shm_free_bytes\{kind="kv",zone="\*"\} \d+
proxy_wasm_shm_free_bytes\{kind="kv",zone="cache"\} [0-4]\d{0,3}
proxy_wasm_shm_free_bytes\{kind="queue",zone="jobs"\} \d+
proxy_wasm_shm_free_bytes\{kind="metrics",zone="metrics"\} \d+
# TYPE proxy_wasm_kv_evictions_total counter
proxy_wasm_kv_evictions_total\{zone="\*"\} 0
proxy_wasm_kv_evictions_total\{zone="cache"\} [1-3]\d
# TYPE proxy_wasm_queue_items gauge
proxy_wasm_queue_items\{queue="jobs"\} 2
$/]



=== TEST 8: max_metric_name_length bounds the prefixed name
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        metrics {
            slab_size 64k;
            max_metric_name_length 16;
        }
    }
--- config
    location / {
        proxy_wasm testbed "request_headers metric 0 short; request_headers metric 0 much_too_long_a_name";
        empty_gif;
    }
--- request
GET /
--- error_log eval
[
    qr/define_metric short returned 0/,
    qr/\[error\] .*define_metric "much_too_long_a_name" failed: the name with its prefix is longer than 16 \(max_metric_name_length\)/,
    qr/define_metric much_too_long_a_name returned 2/,
]



=== TEST 9: a full metrics zone: the definition fails with the reason
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        metrics {
            slab_size 32k;
        }
    }
--- config
    location / {
        proxy_wasm testbed "request_headers metric 2 h1; request_headers metric 2 h2; request_headers metric 2 h3; request_headers metric 2 h4; request_headers metric 2 h5; request_headers metric 2 h6; request_headers metric 2 h7; request_headers metric 2 h8; request_headers metric 2 h9; request_headers metric 2 h10; request_headers metric 2 h11; request_headers metric 2 h12; request_headers metric 2 h13; request_headers metric 2 h14; request_headers metric 2 h15; request_headers metric 2 h16; request_headers metric 2 h17; request_headers metric 2 h18; request_headers metric 2 h19; request_headers metric 2 h20; request_headers metric 2 h21; request_headers metric 2 h22; request_headers metric 2 h23; request_headers metric 2 h24; request_headers metric 2 h25; request_headers metric 2 h26; request_headers metric 2 h27; request_headers metric 2 h28; request_headers metric 2 h29; request_headers metric 2 h30; request_headers metric 2 h31; request_headers metric 2 h32; request_headers metric 2 h33; request_headers metric 2 h34; request_headers metric 2 h35; request_headers metric 2 h36; request_headers metric 2 h37; request_headers metric 2 h38; request_headers metric 2 h39; request_headers metric 2 h40; request_headers metric 2 h41; request_headers metric 2 h42; request_headers metric 2 h43; request_headers metric 2 h44; request_headers metric 2 h45; request_headers metric 2 h46; request_headers metric 2 h47; request_headers metric 2 h48; request_headers metric 2 h49; request_headers metric 2 h50; request_headers metric 2 h51; request_headers metric 2 h52; request_headers metric 2 h53; request_headers metric 2 h54; request_headers metric 2 h55; request_headers metric 2 h56; request_headers metric 2 h57; request_headers metric 2 h58; request_headers metric 2 h59; request_headers metric 2 h60; request_headers metric 2 h61; request_headers metric 2 h62; request_headers metric 2 h63; request_headers metric 2 h64; request_headers metric 2 h65; request_headers metric 2 h66; request_headers metric 2 h67; request_headers metric 2 h68; request_headers metric 2 h69; request_headers metric 2 h70";
        empty_gif;
    }
--- request
GET /
--- error_log eval
[
    qr/\[error\] .*define_metric "h\d+" failed: its zone is full/,
    qr/define_metric h\d+ returned 10/,
]



=== TEST 10: configuration errors: metrics slab_size too small
--- main_config
    wasm {
        metrics {
            slab_size 8k;
        }
    }
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*metrics slab_size must be at least 32k in .*nginx\.conf:\d+/



=== TEST 11: configuration errors: an unknown directive in metrics{}
--- main_config
    wasm {
        metrics {
            slab 8k;
        }
    }
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*unknown directive "slab" in metrics\{\} in .*nginx\.conf:\d+/



=== TEST 12: configuration errors: proxy_wasm_metrics needs a wasm{} block
--- main_config
--- config
    location /metrics {
        proxy_wasm_metrics;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"proxy_wasm_metrics" directive needs a wasm\{\} block in .*nginx\.conf:\d+/



=== TEST 13: tags as Envoy's stats_tags, with the Go SDK example's names, and the Envoy/Istio format without a rule: one family, its series labelled
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        metrics {
            tag value "(_value=([a-zA-Z]+))";
            tag reporter "(_reporter=([a-zA-Z]+))";
        }
    }
--- config
    location /count {
        proxy_wasm testbed "request_headers metric 0 custom_header_value_counts_value=foo_reporter=wasmgosdk; request_headers metric 0 custom_header_value_counts_value=bar_reporter=wasmgosdk; request_headers metric_incr custom_header_value_counts_value=foo_reporter=wasmgosdk 1; request_headers metric_incr custom_header_value_counts_value=bar_reporter=wasmgosdk 2; request_headers metric 0 requests.reporter=.=source%3B.%3B; request_headers metric_incr requests.reporter=.=source%3B.%3B 3; request_headers metric 2 latency.reporter=.=source%3B.%3B; request_headers metric_record latency.reporter=.=source%3B.%3B 7";
        empty_gif;
    }
    location /metrics {
        proxy_wasm_metrics;
    }
--- request eval
["GET /count", "GET /metrics"]
--- response_body_like eval
["", qr/^# TYPE testbed_custom_header_value_counts counter
testbed_custom_header_value_counts\{value="bar",reporter="wasmgosdk"\} 2
testbed_custom_header_value_counts\{value="foo",reporter="wasmgosdk"\} 1
# TYPE testbed_latency histogram
testbed_latency_bucket\{reporter="source",le="0.5"\} 0
(?:testbed_latency_bucket\{reporter="source",le="[\d.]+"\} [01]\n)+testbed_latency_bucket\{reporter="source",le="\+Inf"\} 1
testbed_latency_sum\{reporter="source"\} 7
testbed_latency_count\{reporter="source"\} 1
# TYPE testbed_requests counter
testbed_requests\{reporter="source"\} 3
# TYPE proxy_wasm_shm_free_bytes gauge
/]



=== TEST 14: configuration errors: a tag rule that is not one, with its line
--- main_config
    wasm {
        metrics {
            tag value "(_value=([a-z]+)";
        }
    }
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*metrics tag "value": invalid regular expression: .* in .*nginx\.conf:\d+$/m



=== TEST 15: configuration errors: a tag rule without a capture group
--- main_config
    wasm {
        metrics {
            tag value "_value=[a-z]+";
        }
    }
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*metrics tag "value": the regular expression needs a capture group \(what is taken out of the name\) in .*nginx\.conf:\d+$/m



=== TEST 16: configuration errors: a tag name that is not a Prometheus label's
--- main_config
    wasm {
        metrics {
            tag 9value "(_v)";
        }
    }
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*metrics tag "9value": not a Prometheus label name/
