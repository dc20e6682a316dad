# Shared queues in shm_queue zones: register, resolve (by vm id and name),
# enqueue, dequeue, EMPTY, a full queue; on_queue_ready in the root context
# that registered the queue, in its worker, for items other workers
# enqueued.
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

workers(2);

run_tests();

__DATA__

=== TEST 1: register, resolve, enqueue, dequeue in order, then EMPTY
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        shm_queue jobs 64k;
    }
--- config
    location / {
        proxy_wasm testbed "request_headers queue_register jobs; request_headers queue_resolve testbed jobs; request_headers queue_resolve - jobs; request_headers enqueue testbed jobs first; request_headers enqueue testbed jobs second; request_headers dequeue jobs; request_headers dequeue jobs; request_headers dequeue jobs";
        empty_gif;
    }
--- request
GET /
--- grep_error_log eval
qr/registered queue [^,\n]*|resolved queue [^,\n]*|enqueued [^,\n]*|dequeue[^,\n]*/
--- grep_error_log_out eval
qr/^registered queue jobs as #1
resolved queue testbed\/jobs as #1
resolved queue -\/jobs as #1
enqueued "first" on jobs: 0
enqueued "second" on jobs: 0
dequeued "first" \(5 bytes\)
dequeued "second" \(6 bytes\)
dequeue: empty
$/



=== TEST 2: resolving a queue: no such zone, not registered yet, registered by another vm: NOT_FOUND; an empty vm id is one's own
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        module other $TEST_NGINX_FILTERS/testbed.wasm;
        shm_queue a 64k;
        shm_queue b 64k;
    }
--- config
    location / {
        proxy_wasm other "request_headers queue_register b";
        proxy_wasm testbed "request_headers queue_resolve testbed nope; request_headers queue_resolve testbed a; request_headers queue_resolve testbed b; request_headers queue_resolve - b; request_headers queue_resolve other b; request_headers enqueue other b from%20testbed";
        proxy_wasm other "request_headers queue_resolve - b; request_headers dequeue b";
        empty_gif;
    }
--- request
GET /
--- grep_error_log eval
qr/resolved queue [^,\n]*|enqueued [^,\n]*|dequeue[^,\n]*/
--- grep_error_log_out eval
qr/^resolved queue testbed\/nope: missing
resolved queue testbed\/a: missing
resolved queue testbed\/b: missing
resolved queue -\/b: missing
resolved queue other\/b as #2
enqueued "from testbed" on b: 0
resolved queue -\/b as #2
dequeued "from testbed" \(12 bytes\)
$/



=== TEST 3: registering a queue no shm_queue declares fails the filter, with the reason
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
    }
--- config
    location / {
        proxy_wasm testbed "request_headers queue_register nope";
        empty_gif;
    }
--- request
GET /
--- error_code: 500
--- error_log eval
[
    qr/\[error\] .*register_shared_queue "nope" failed: no such shm_queue in wasm\{\}/,
    # the Rust SDK panics on any status but OK
    qr/\[crit\] .*panicked at 'unexpected status: 1'/,
]



=== TEST 4: a full queue: INTERNAL_FAILURE with the reason, nothing lost
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        shm_queue small 32k;
    }
--- config
    location /fill {
        proxy_wasm testbed "request_headers queue_register small; request_headers enqueue_fill small 100 1000";
        empty_gif;
    }
    location /drain {
        proxy_wasm testbed "request_headers kv_get x; request_headers dequeue small; request_headers dequeue small";
        empty_gif;
    }
--- request eval
["GET /fill"]
--- error_log eval
[
    qr/enqueue_fill small: \d+ stored, last status 10/,
    qr/\[error\] .*enqueue_shared_queue "#1" failed: its zone is full/,
]
--- log_eval
# the zone took a few items and refused the rest
/enqueue_fill small: (\d+) stored/ && $1 >= 5 && $1 < 100



=== TEST 5: on_queue_ready reaches the registering root context in its worker, for items the other worker enqueued
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        shm_queue events 256k;
    }
--- config
    location / {
        # every worker's root context enqueues on 5 ticks; the queue is
        # registered by a request, so by one worker
        proxy_wasm testbed "configure tick_period 150; tick tick_count 5 0; tick enqueue testbed events item; queue_ready drain; request_headers queue_register events";
        empty_gif;
    }
--- request
GET /
--- wait: 1.5
--- log_eval
my (%enqueuers, %receivers, $enqueued, $dequeued);
for (split /\n/) {
    if (/(\d+)#\d+: .*enqueued "item" on events: 0/) { $enqueuers{$1}++; $enqueued++ }
    if (/(\d+)#\d+: .*on_queue_ready #1/) { $receivers{$1}++ }
    $dequeued++ if /dequeued "item"/;
}
# both workers enqueued, one received everything, nothing was lost
keys %enqueuers == 2 && keys %receivers == 1 && $enqueued >= 6 && $dequeued == $enqueued



=== TEST 6: the root context that registered a queue last in a worker receives on_queue_ready, as in Envoy
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        shm_queue q 64k;
    }
--- config
    location / {
        proxy_wasm testbed "request_headers queue_register q; queue_ready log info first%20filter";
        proxy_wasm testbed "request_headers queue_register q; request_headers enqueue testbed q x; queue_ready log info second%20filter; queue_ready dequeue ready";
        empty_gif;
    }
--- request
GET /
--- wait: 0.5
--- error_log eval
[qr/second filter/, qr/dequeued "x"/]
--- no_error_log
first filter



=== TEST 7: items enqueued before a worker is told are not lost: each on_queue_ready sees one, the next finds the queue empty
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        shm_queue q 64k;
    }
--- config
    location /register {
        proxy_wasm testbed "request_headers queue_register q; queue_ready dequeue ready";
        empty_gif;
    }
    location /put {
        proxy_wasm testbed "request_headers enqueue testbed q a; request_headers enqueue testbed q b; request_headers enqueue testbed q c";
        empty_gif;
    }
--- request eval
["GET /register", "GET /put"]
--- wait: 0.5
--- grep_error_log eval
qr/dequeue[^,\n]*/
--- grep_error_log_out eval
qr/^dequeued "a" \(1 bytes\)
dequeued "b" \(1 bytes\)
dequeued "c" \(1 bytes\)
$/



=== TEST 8: queue items outlive a reload; the new workers are told of them
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        shm_queue keep 64k;
    }
--- config
    location / {
        proxy_wasm testbed "request_headers queue_register keep; request_headers enqueue testbed keep before%20reload; request_headers respond 200 old";
    }
--- request
GET /
--- reload_config
    location / {
        proxy_wasm testbed "configure queue_register keep; queue_ready drain; request_headers respond 200 new";
    }
--- reload_response_like eval
[qr/old/, qr/new|old/]
--- reload_wait: 2
--- error_log eval
qr/dequeued "before reload"/



=== TEST 9: a worker killed while it is the queue's receiver: its items wait, and go to the next worker that registers
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        shm_queue q 64k;
    }
--- config
    location /register {
        proxy_wasm testbed "request_headers queue_register q; queue_ready dequeue ready";
        empty_gif;
    }
    location /put {
        proxy_wasm testbed "request_headers enqueue testbed q a; request_headers enqueue testbed q b";
        empty_gif;
    }
--- request eval
[
    "GET /register",
    sub {
        # the worker that registered the queue dies without leaving it
        my $log = Test::Nginx::Socket::read_file("$ENV{TEST_NGINX_SERVROOT}/logs/error.log");
        my ($pid) = $log =~ /(\d+)#\d+: .*registered queue q/;
        kill 'KILL', $pid;
        select undef, undef, undef, 0.5;
    },
    "GET /put",
    "GET /register",
    "GET /register",
]
--- wait: 0.5
--- error_log eval
[
    qr/\[alert\] .*worker process \d+ exited on signal 9/,
    qr/worker \d+ of queue "q" is gone/,
]
--- log_eval
# each item was dequeued once, after the kill
my @items = /dequeued "(\w)"/g;
join(",", sort @items) eq "a,b"



=== TEST 10: bad pointers and unknown ids: the ABI's statuses; an item is not taken for a bad out-pointer
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        shm_kv * 64k;
        shm_queue q 64k;
    }
--- config
    location / {
        proxy_wasm testbed "request_headers kv_set k v; request_headers queue_register q; request_headers enqueue testbed q kept; request_headers metric 0 c; request_headers bad_shared_pointers; request_headers dequeue q";
        empty_gif;
    }
--- request
GET /
--- grep_error_log eval
qr/[a-z_]+ (with|on) (a bad|an unknown) [^,\n]*|dequeued [^,\n]*/
--- grep_error_log_out
get_shared_data with a bad key: 6
get_shared_data with a bad out-pointer: 6
get_shared_data with a bad cas pointer: 6
set_shared_data with a bad value: 6
register_shared_queue with a bad name: 6
register_shared_queue with a bad out-pointer: 6
enqueue_shared_queue with a bad value: 6
enqueue_shared_queue on an unknown queue: 1
dequeue_shared_queue with a bad out-pointer: 6
dequeue_shared_queue on an unknown queue: 1
define_metric with a bad name: 6
get_metric with a bad out-pointer: 6
dequeued "kept" (4 bytes)



=== TEST 11: a filter that enqueues from on_queue_ready for itself, forever, does not keep the worker from its requests
--- workers: 1
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        shm_queue loop 64k;
    }
--- config
    location /start {
        proxy_wasm testbed "request_headers queue_register loop; request_headers enqueue testbed loop x; queue_ready dequeue ready; queue_ready enqueue testbed loop x";
        empty_gif;
    }
    location /ping {
        return 200 pong;
    }
--- request eval
["GET /start", "GET /ping", "GET /ping", "GET /ping"]
--- response_body_like eval
["", qr/pong/, qr/pong/, qr/pong/]
--- timeout: 3
--- log_eval
# the loop ran all along
my @ready = /on_queue_ready/g;
@ready > 10



=== TEST 12: many items at once: on_queue_ready once per item, in batches across turns of the event loop
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        shm_queue q 256k;
    }
--- config
    location /register {
        proxy_wasm testbed "request_headers queue_register q; queue_ready dequeue ready";
        empty_gif;
    }
    location /put {
        proxy_wasm testbed "request_headers enqueue_fill q 300 10";
        empty_gif;
    }
--- request eval
["GET /register", "GET /put"]
--- wait: 1
--- error_log
enqueue_fill q: 300 stored, last status 0
--- log_eval
my $dequeued = () = /dequeued "qqqqqqqqqq"/g;
my $empty = () = /dequeue: empty/g;
$dequeued == 300 && $empty == 0



=== TEST 13: configuration errors
--- main_config
    wasm {
        shm_queue q 64k;
        shm_queue q 64k;
    }
--- config
--- must_die
--- error_log eval
qr/\[emerg\] .*duplicate queue zone "q" in .*nginx\.conf:\d+/
