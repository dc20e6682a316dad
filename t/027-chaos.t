# Chaos: workers killed with SIGKILL while they hold shared-memory locks
# and while calls are in flight, and 20 reloads in 10 s under load with
# requests paused on calls. After each: no deadlock, no request that hangs,
# no corrupted zone, nothing lost that the semantics promise to keep. (A
# hostile upstream of calls is t/025's.)
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(sleep time);

workers(2);
log_level('info');

our $Services = <<'END';
    server {
        listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1;
        location /quick {
            return 200 "ok";
        }
        location /slow {
            # the headers come after about a second
            limit_rate 100;
            return 200 "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789";
        }
    }
END

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('http_config', $Services) unless defined $block->http_config;
});

# GET path on the nginx under test; the status, 0 when the connection
# closed without one, undef when nothing came within the timeout.
sub get {
    my ($path, $timeout) = @_;
    return ProxyWasmTest::request_ends("GET $path HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                                       $timeout // 10);
}

# Clients that request paths in turn until `until`, each from its own
# process; "<path> <status>" of each request (status "hang" if nothing
# came within 10 s), one per line, in $file.
sub clients {
    my ($n, $until, $file, @paths) = @_;
    my @pids;
    for my $client (1 .. $n) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            open my $out, '>>', $file or POSIX::_exit(1);
            $out->autoflush(1);
            my $i = $client;
            while (time < $until) {
                my $path = $paths[$i++ % @paths];
                my $status = get($path, 10);
                print $out "$path ", (defined $status ? $status : 'hang'), "\n";
            }
            POSIX::_exit(0);
        }
        push @pids, $pid;
    }
    return @pids;
}

sub statuses {
    my ($file) = @_;
    open my $fh, '<', $file or return ();
    chomp(my @lines = <$fh>);
    return @lines;
}

sub reloads {
    my ($log) = @_;
    open my $fh, '<', $log or return 0;
    my $text = do { local $/; <$fh> };
    my $n = () = $text =~ /: reconfiguring$/mg;
    return $n;
}

sub master_pid {
    open my $fh, '<', "$ENV{TEST_NGINX_SERVROOT}/logs/nginx.pid" or die "no pid file: $!";
    my $pid = <$fh>;
    $pid =~ s/\s+//g;
    return $pid;
}

# the live workers of a master (a killed one stays a zombie until the
# master reaps it)
sub workers_of {
    my ($master) = @_;
    return grep {
        my $stat = '';
        if (open my $fh, '<', "/proc/$_/stat") {
            $stat = <$fh> // '';
        }
        $stat =~ /^\d+ \(.*\) [^Z]/;
    } grep { /^\d+$/ } split /\s+/, `pgrep -P $master`;
}

run_tests();

__DATA__

=== TEST 1: workers killed while they write to shared memory: the others go on, no lock stays taken, every stored entry stays
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        shm_kv * 4m;
    }
--- config
    location /fill {
        proxy_wasm testbed "request_headers kv_fill k 1 300 200";
        empty_gif;
    }
    location /incr {
        proxy_wasm testbed "request_headers kv_incr counter";
        empty_gif;
    }
    location /count {
        proxy_wasm testbed "request_headers kv_count k 1 300; request_headers kv_get counter; request_headers kv_set fresh value";
        empty_gif;
    }
--- request eval
[sub {
    my $file = "$ENV{TEST_NGINX_SERVROOT}/logs/statuses";
    my @clients = main::clients(6, time + 3.5, $file, "/fill", "/incr", "/fill", "/incr");
    my $master = main::master_pid();
    # a killed worker may take a while to go (a sanitized one unmaps a
    # lot): each is killed once
    my %killed;
    for (1 .. 6) {
        sleep 0.45;
        # the master may be starting the last one killed
        my @workers;
        for (1 .. 250) {
            @workers = grep { !$killed{$_} } main::workers_of($master);
            last if @workers;
            sleep 0.02;
        }
        next unless @workers;
        my $pid = $workers[int rand @workers];
        $killed{$pid} = 1 if kill 'KILL', $pid;
    }
    my $kills = keys %killed;
    Test::More::cmp_ok($kills, '>=', 4, "workers were killed");
    open my $fh, '>', "$ENV{TEST_NGINX_SERVROOT}/logs/kills" or die;
    print $fh $kills;
    waitpid $_, 0 for @clients;
    my @statuses = main::statuses($file);
    Test::More::is(scalar(grep { / hang$/ } @statuses), 0, "no request hung");
    Test::More::cmp_ok(scalar(grep { / 200$/ } @statuses), '>', 50, "requests were served meanwhile");
}, "GET /count", "GET /count", "GET /incr"]
--- error_code eval
[undef, 200, 200, 200]
--- timeout: 10
--- error_log eval
qr/exited on signal 9|was locked by \d+/
--- log_eval
open my $fh, '<', "$ENV{TEST_NGINX_SERVROOT}/logs/kills" or die;
my $sent = <$fh>;
my $kills = () = /worker process \d+ exited on signal 9/g;
my $crashes = () = /exited on signal (?!9\b)\d+/g;
my @counts = /kv_count k1..300: (\d+) present/g;
$kills == $sent && $crashes == 0 && "@counts" eq "300 300" && /kv_set fresh returned 0/



=== TEST 2: a worker killed with calls in flight: its clients' connections close, nobody hangs, the new worker makes calls
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
    }
--- config
    location /call {
        proxy_wasm testbed "request_headers call 127.0.0.1:$TEST_NGINX_RAND_PORT_1 GET /slow svc 5000; request_headers pause; call_response continue";
        empty_gif;
    }
    location /quick {
        proxy_wasm testbed "request_headers call 127.0.0.1:$TEST_NGINX_RAND_PORT_1 GET /quick svc 5000; request_headers pause; call_response continue";
        empty_gif;
    }
--- request eval
[sub {
    my $file = "$ENV{TEST_NGINX_SERVROOT}/logs/statuses";
    my @clients = main::clients(6, time + 0.5, $file, "/call");
    sleep 0.4;
    my @workers = main::workers_of(main::master_pid());
    kill 'KILL', $workers[0];
    waitpid $_, 0 for @clients;
    my @statuses = main::statuses($file);
    Test::More::is(scalar(grep { / hang$/ } @statuses), 0, "no request hung");
    Test::More::is(CORE::join(',', grep { !/ (200|0)$/ } @statuses), '', "each got its response, or its connection closed");
}, "GET /quick", "GET /quick", "GET /quick"]
--- error_code eval
[undef, 200, 200, 200]
--- timeout: 10
--- error_log eval
qr/exited on signal 9/



=== TEST 3: 20 reloads in 10 s under load, with requests paused on calls: the old workers finish every request they accepted
--- main_config
    wasm {
        module testbed $TEST_NGINX_FILTERS/testbed.wasm;
        shm_kv * 1m;
        cache $TEST_NGINX_SERVROOT/cache;
    }
--- init
mkdir "$ENV{TEST_NGINX_SERVROOT}/cache";
--- config
    location /call {
        proxy_wasm testbed "request_headers call 127.0.0.1:$TEST_NGINX_RAND_PORT_1 GET /slow svc 5000; request_headers pause; call_response continue";
        empty_gif;
    }
    location /kv {
        proxy_wasm testbed "request_headers kv_incr served";
        empty_gif;
    }
    location /count {
        proxy_wasm testbed "request_headers kv_get served";
        empty_gif;
    }
--- request eval
[sub {
    my $file = "$ENV{TEST_NGINX_SERVROOT}/logs/statuses";
    # the counter exists before the load: filters increment it with CAS,
    # and a key that is not there yet has none (two first increments in
    # two workers would both store 1)
    Test::More::is(main::get("/kv", 10), 200, "the counter is made");
    my @clients = main::clients(6, time + 10, $file, "/call", "/kv", "/kv");
    my $master = main::master_pid();
    my $log = "$ENV{TEST_NGINX_SERVROOT}/logs/error.log";
    my $started = time;
    for my $n (1 .. 20) {
        my $next = time + 0.5;
        kill 'HUP', $master;
        # one reload at a time: signals sent while the master reads the
        # configuration would count as one
        my $deadline = time + 5;
        sleep 0.02 while time < $deadline && main::reloads($log) < $n;
        sleep $next - time if $next > time;
    }
    Test::More::cmp_ok(time - $started, '<', 15, "20 reloads in about 10 s");
    waitpid $_, 0 for @clients;
    my @statuses = main::statuses($file);
    my $calls = grep { m{^/call 200$} } @statuses;
    my $kv = 1 + grep { m{^/kv 200$} } @statuses;
    Test::More::cmp_ok($calls, '>', 20, "requests paused on calls were served through the reloads");
    Test::More::is(CORE::join(',', grep { !/ 200$/ } @statuses), '', "every request got its 200");
    # what the shared counter must say
    open my $fh, '>', "$ENV{TEST_NGINX_SERVROOT}/logs/kv_expected" or die;
    print $fh $kv;
}, "GET /count"]
--- error_code eval
[undef, 200]
--- timeout: 15
--- wait: 1
--- log_eval
# the shared counter counted every /kv request, across 21 generations of
# workers
open my $fh, '<', "$ENV{TEST_NGINX_SERVROOT}/logs/kv_expected" or die;
my $expected = <$fh>;
my @counts = /kv_get served: "(\d+)"/g;
my $reloads = () = /: reconfiguring$/mg;
$reloads == 20 && @counts == 1 && $counts[0] == $expected && $expected > 40
