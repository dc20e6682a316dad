# Modules kept apart (filters often come from different vendors): a zone
# without share= gives each module its own keys and queues, a zone with
# share= serves only the modules it names, metric ids are their filter's,
# and the metrics endpoint serves what the configuration names. "a", "b"
# and "c" are the same filter loaded as three modules (three vm ids).
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

workers(2);

sub modules {
    my $zones = shift;
    return "    wasm {
        module a \$TEST_NGINX_FILTERS/testbed.wasm;
        module b \$TEST_NGINX_FILTERS/testbed.wasm;
        module c \$TEST_NGINX_FILTERS/testbed.wasm;
$zones
    }";
}

run_tests();

__DATA__

=== TEST 1: a zone without share=: each module reads and writes its own keys, under the same names
--- main_config eval
main::modules("        shm_kv * 64k;")
--- config
    location /a {
        proxy_wasm a "request_headers kv_set token a-secret; request_headers kv_get token";
        empty_gif;
    }
    location /b {
        proxy_wasm b "request_headers kv_get token; request_headers kv_set token b-own; request_headers kv_get token";
        empty_gif;
    }
--- request eval
["GET /a", "GET /b", "GET /a"]
--- grep_error_log eval
qr/kv_(get|set) token[^,]*/
--- grep_error_log_out eval
qr/^kv_set token returned 0
kv_get token: "a-secret" cas \d+
kv_get token: missing
kv_set token returned 0
kv_get token: "b-own" cas \d+
kv_set token returned 0
kv_get token: "a-secret" cas \d+
$/



=== TEST 2: ... nor evict another's entries: a module evicts only its own oldest, and a full zone refuses the other module
--- main_config eval
main::modules("        shm_kv * 32k eviction=lru;")
--- config
    location /a {
        proxy_wasm a "request_headers kv_fill k 1 200 100; request_headers kv_count k 1 200";
        empty_gif;
    }
    location /b {
        proxy_wasm b "request_headers kv_fill big 1 1 1000";
        empty_gif;
    }
    location /a/again {
        proxy_wasm a "request_headers kv_count k 1 200";
        empty_gif;
    }
--- workers: 1
--- request eval
["GET /a", "GET /b", "GET /a/again"]
--- grep_error_log eval
qr/kv_(fill|count) [^,]*/
--- grep_error_log_out eval
qr/^kv_fill k1..200: all stored
kv_count k1..200: (?!200 )(\d+) present (\[[\d ]+ 200\])
kv_fill big1..1: big1 failed with 10
kv_count k1..200: \1 present \2
$/
--- error_log
set_shared_data "big1" failed: its zone is full



=== TEST 3: a zone with share=: the modules it names share its keys; any other module finds nothing, and cannot write
--- main_config eval
main::modules("        shm_kv tokens 64k share=a,b;")
--- config
    location /a {
        proxy_wasm a "request_headers kv_set tokens/t shared-by-a-and-b";
        empty_gif;
    }
    location /b {
        proxy_wasm b "request_headers kv_get tokens/t";
        empty_gif;
    }
    location /c {
        proxy_wasm c "request_headers kv_get tokens/t; request_headers kv_set tokens/t c-overwrites";
        empty_gif;
    }
--- request eval
["GET /a", "GET /b", "GET /c", "GET /b"]
--- grep_error_log eval
qr/kv_(get|set) tokens\/t[^,]*/
--- grep_error_log_out eval
qr/^kv_set tokens\/t returned 0
kv_get tokens\/t: "shared-by-a-and-b" cas \d+
kv_get tokens\/t: missing
kv_set tokens\/t returned 1
kv_get tokens\/t: "shared-by-a-and-b" cas \d+
$/
--- error_log eval
[qr/\[error\] .*proxy_wasm "c" #\d+: get_shared_data "tokens\/t" failed: not given to this module/,
 qr/\[error\] .*proxy_wasm "c" #\d+: set_shared_data "tokens\/t" failed: not given to this module/]



=== TEST 4: share=* opens a zone to every module, with one key space (Kong's zones)
--- main_config eval
main::modules("        shm_kv * 64k share=*;")
--- config
    location /a {
        proxy_wasm a "request_headers kv_set k from-a";
        empty_gif;
    }
    location /c {
        proxy_wasm c "request_headers kv_get k";
        empty_gif;
    }
--- request eval
["GET /a", "GET /c"]
--- grep_error_log eval
qr/kv_(get|set) k[^,]*/
--- grep_error_log_out eval
qr/^kv_set k returned 0
kv_get k: "from-a" cas \d+
$/



=== TEST 5: share= must name modules of wasm{}
--- main_config eval
main::modules("        shm_kv tokens 64k share=a,nope;")
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*shm_kv "tokens": share= names no module of wasm\{\}: "nope" in \S+nginx\.conf:\d+$/m



=== TEST 6: a queue without share= is its first registrant's: another module may enqueue to it (by the owner's vm id) but neither register nor dequeue it
--- main_config eval
main::modules("        shm_queue q 64k;")
--- config
    location /a {
        proxy_wasm a "configure queue_register q; queue_ready dequeue ready";
        empty_gif;
    }
    location /b {
        proxy_wasm b "request_headers register_status q; request_headers enqueue a q from-b; request_headers dequeue_of a q; request_headers queue_resolve - q";
        empty_gif;
    }
--- workers: 1
--- request eval
["GET /a", "GET /b"]
--- wait: 0.3
--- grep_error_log eval
qr/register_shared_queue q returned \d+|enqueued "from-b" on q: \d+|dequeue from a\/q: [^,]*|dequeued "from-b"|resolved queue -\/q: [^,]*/
--- grep_error_log_out eval
qr/^register_shared_queue q returned 1
enqueued "from-b" on q: 0
dequeue from a\/q: error NotFound
resolved queue -\/q: missing
dequeued "from-b"
$/
--- error_log eval
[qr/proxy_wasm "b" #\d+: register_shared_queue "q" failed: not given to this module/,
 qr/proxy_wasm "b" #\d+: dequeue_shared_queue "#1" failed: not given to this module/]



=== TEST 7: a queue with share=: only the modules it names reach it
--- main_config eval
main::modules("        shm_queue q 64k share=a,b;")
--- config
    location /a {
        proxy_wasm a "configure queue_register q";
        empty_gif;
    }
    location /b {
        proxy_wasm b "request_headers enqueue a q from-b; request_headers dequeue_of a q";
        empty_gif;
    }
    location /c {
        proxy_wasm c "request_headers queue_resolve a q; request_headers register_status q";
        empty_gif;
    }
--- workers: 1
--- request eval
["GET /a", "GET /b", "GET /c"]
--- grep_error_log eval
qr/enqueued "from-b" on q: \d+|dequeued "from-b" from a\/q|resolved queue a\/q: [^,]*|register_shared_queue q returned \d+/
--- grep_error_log_out eval
qr/^enqueued "from-b" on q: 0
dequeued "from-b" from a\/q
resolved queue a\/q: missing
register_shared_queue q returned 1
$/



=== TEST 8: metric ids are their filter's: another filter's id is NOT_FOUND, its value untouched
--- config
    location /a {
        proxy_wasm a "request_headers metric 0 hits; request_headers metric_incr hits 5; request_headers metric_get hits";
        empty_gif;
    }
    location /b {
        proxy_wasm b "request_headers metric_incr #4 100 log; request_headers metric_record #4 100 log; request_headers metric_get #4";
        empty_gif;
    }
    location /again {
        proxy_wasm a "request_headers metric_get hits";
        empty_gif;
    }
--- main_config eval
main::modules("")
--- workers: 1
--- request eval
["GET /a", "GET /b", "GET /again"]
--- grep_error_log eval
qr/define_metric hits returned \d+ id \d+|(increment|record|get)_metric \S+ (\d+ )?returned \d+( value -?\d+)?/
--- grep_error_log_out
define_metric hits returned 0 id 4
get_metric hits returned 0 value 5
increment_metric #4 100 returned 1
record_metric #4 100 returned 1
get_metric #4 returned 1 value 0
get_metric hits returned 0 value 5



=== TEST 9: the metrics endpoint serves the modules it names, else every module of the configuration
--- main_config eval
main::modules("")
--- config
    location /a {
        proxy_wasm a "request_headers metric 0 hits; request_headers metric_incr hits 1";
        empty_gif;
    }
    location /b {
        proxy_wasm b "request_headers metric 0 hits; request_headers metric_incr hits 1";
        empty_gif;
    }
    location /metrics {
        proxy_wasm_metrics;
    }
    location /metrics/a {
        proxy_wasm_metrics a;
    }
--- request eval
["GET /a", "GET /b", "GET /metrics", "GET /metrics/a"]
--- response_body_like eval
["", "", qr/^a_hits 1\n(.|\n)*^b_hits 1$/m, qr/\A(?!(.|\n)*b_hits)(.|\n)*^a_hits 1$/m]



=== TEST 10: proxy_wasm_metrics must name modules of wasm{}
--- main_config eval
main::modules("")
--- config
    location /metrics {
        proxy_wasm_metrics a nope;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*unknown module "nope" in \S+nginx\.conf:\d+$/m
