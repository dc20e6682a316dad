package ProxyWasmTest;

# Helpers for this project's .t files, on Test::Nginx's public API only (so
# the files still run under upstream Test::Nginx).

use strict;
use warnings;

use Exporter 'import';
our @EXPORT = qw(default_modules test_certificates trap_storm hostile_upstream
                 stop_process fuzz_directives request_ends run_command
                 elf_facts grpc_server h2_hostile redis_server
                 resetting_server);

use File::Spec;
use File::Temp qw(tempdir);
use IO::Select;
use IO::Socket::INET;
use Socket qw(SOL_SOCKET SO_LINGER);
use POSIX ();
use Time::HiRes qw(sleep time);

# the servers helpers started, stopped at exit
my @Servers;

# default_modules(name => path, ...): the wasm{} block of every block that
# has no main_config of its own.
sub default_modules {
    my @modules = @_;
    my $wasm = "    wasm {\n";
    while (my ($name, $path) = splice @modules, 0, 2) {
        $wasm .= "        module $name $path;\n";
    }
    $wasm .= "    }\n";

    main::add_block_preprocessor(sub {
        my $block = shift;
        $block->set_value('main_config', $wasm) unless defined $block->main_config;
    });
}

# test_certificates(name, ...): a test CA (ca.crt) and, for each name, a
# certificate it signs (<name>.crt, <name>.key) for "/O=ngx_proxy_wasm/
# CN=<name>.test" with the subject alternative names DNS:<name>.test and
# URI:spiffe://test/<name>. Returns their directory, removed at exit, also
# set as $TEST_NGINX_CERTS.
sub test_certificates {
    my @names = @_;
    my $dir = tempdir(CLEANUP => 1);
    my $openssl = sub {
        my $cmd = shift;
        system("openssl $cmd >/dev/null 2>&1") == 0 or die "openssl $cmd failed";
    };
    my $key = '-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes';
    $openssl->("req -x509 $key -keyout $dir/ca.key -out $dir/ca.crt -days 2 "
               . "-subj '/CN=Test CA'");
    for my $name (@names) {
        open my $ext, '>', "$dir/$name.ext" or die "$dir/$name.ext: $!";
        print $ext "subjectAltName=DNS:$name.test,URI:spiffe://test/$name\n";
        close $ext;
        $openssl->("req $key -keyout $dir/$name.key -out $dir/$name.csr "
                   . "-subj '/O=ngx_proxy_wasm/CN=$name.test'");
        $openssl->("x509 -req -in $dir/$name.csr -CA $dir/ca.crt "
                   . "-CAkey $dir/ca.key -CAcreateserial -days 2 "
                   . "-extfile $dir/$name.ext -out $dir/$name.crt");
    }
    $ENV{TEST_NGINX_CERTS} = $dir;
    return $dir;
}

# trap_storm(bystander => '/', trap => '/panic', seconds => 4, rate => 5,
# connections => 4): wrk drives the bystander location of the nginx under
# test while a client requests the trap location `rate` times a second.
# Returns { requests => bystander requests, failed => bystander requests
# that got no 2xx (or a socket error), traps => [statuses of the trap
# location's responses] }.
sub trap_storm {
    my %a = (bystander => '/', trap => '/panic', seconds => 4, rate => 5,
             connections => 4, @_);
    my $port = $ENV{TEST_NGINX_SERVER_PORT};
    my $dir = tempdir(CLEANUP => 1);

    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>', "$dir/wrk.out" or POSIX::_exit(127);
        exec('wrk', '-t1', "-c$a{connections}", "-d$a{seconds}s",
             "http://127.0.0.1:$port$a{bystander}") or POSIX::_exit(127);
    }

    my @traps;
    my $end = time + $a{seconds} - 0.3;
    while (time < $end) {
        push @traps, request_ends("GET $a{trap} HTTP/1.1\r\nHost: localhost\r\n"
                                  . "Connection: close\r\n\r\n", 5) // 0;
        sleep 1 / $a{rate};
    }
    waitpid $pid, 0;

    open my $fh, '<', "$dir/wrk.out" or die "wrk printed nothing: $!";
    my $out = do { local $/; <$fh> };
    my ($requests) = $out =~ /(\d+) requests in/;
    my ($non2xx) = $out =~ /Non-2xx or 3xx responses: (\d+)/;
    my $errors = 0;
    $errors += $_ for $out =~ /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/;
    return { requests => $requests // 0, failed => ($non2xx // 0) + $errors,
             traps => \@traps, output => $out };
}

# request_ends(raw request, timeout): sends a request to the nginx under
# test and reads until the connection closes. Returns the status (0 if
# the connection closed without a response), or undef if it did not end
# within the timeout.
sub request_ends {
    my ($raw, $timeout) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $ENV{TEST_NGINX_SERVER_PORT},
                                     Timeout => $timeout) or return undef;
    print $sock $raw;
    my $response = '';
    my $deadline = time + $timeout;
    while (time < $deadline) {
        my $bits = '';
        vec($bits, fileno $sock, 1) = 1;
        next unless select($bits, undef, undef, $deadline - time);
        my $n = sysread $sock, my $chunk, 65536;
        if (!$n) {
            close $sock;
            return $response =~ m{^HTTP/1\.\d (\d+)} ? $1 : 0;
        }
        $response .= $chunk;
    }
    close $sock;
    return undef;
}

# The ways hostile_upstream answers, in turn, one per connection.
our @HostileBehaviours = qw(garbage truncated huge_head bad_chunks drip reset
                            silent interim_flood huge_body valid);

# hostile_upstream(port): a server on 127.0.0.1:port whose connections get,
# in turn, each of @HostileBehaviours (garbage, a truncated body, a 70 KiB
# header, bad chunk sizes, a valid response dripped a byte every 10 ms, a
# reset, silence, a flood of 100 Continue, a huge Content-Length, a valid
# response). Returns its pid, for stop_process; it also ends by itself
# after 120 s.
sub hostile_upstream {
    my ($port) = @_;
    my $listener = IO::Socket::INET->new(LocalAddr => "127.0.0.1:$port",
                                         Listen => 64, ReuseAddr => 1)
        or die "cannot listen on 127.0.0.1:$port: $!";
    my $pid = fork // die "fork: $!";
    if ($pid) {
        close $listener;
        return $pid;
    }
    $SIG{CHLD} = 'IGNORE';
    alarm 120;
    my $n = 0;
    while (my $conn = $listener->accept) {
        my $behaviour = $HostileBehaviours[$n++ % @HostileBehaviours];
        my $child = fork;
        if (defined $child && $child == 0) {
            close $listener;
            alarm 10;
            hostile_answer($conn, $behaviour);
            POSIX::_exit(0);
        }
        close $conn;
    }
    POSIX::_exit(0);
}

sub hostile_answer {
    my ($conn, $behaviour) = @_;
    $conn->autoflush(1);
    # the request head
    while (my $line = <$conn>) {
        last if $line =~ /^\r?\n$/;
    }
    my $valid = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    if ($behaviour eq 'garbage') {
        print $conn join '', map { chr int rand 256 } 1 .. 512;
    } elsif ($behaviour eq 'truncated') {
        print $conn "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort";
    } elsif ($behaviour eq 'huge_head') {
        print $conn "HTTP/1.1 200 OK\r\nx-big: " . ('v' x 70000) . "\r\n\r\n";
    } elsif ($behaviour eq 'bad_chunks') {
        print $conn "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    . "zz\r\nabc\r\n0\r\n\r\n";
    } elsif ($behaviour eq 'drip') {
        for my $byte (split //, $valid) {
            print $conn $byte;
            sleep 0.01;
        }
    } elsif ($behaviour eq 'reset') {
        setsockopt($conn, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
    } elsif ($behaviour eq 'silent') {
        sleep 3;
    } elsif ($behaviour eq 'interim_flood') {
        print $conn "HTTP/1.1 100 Continue\r\n\r\n" x 5000;
        sleep 3;
    } elsif ($behaviour eq 'huge_body') {
        print $conn "HTTP/1.1 200 OK\r\nContent-Length: 100000000000\r\n\r\n"
                    . ('b' x 65536);
    } else {
        print $conn $valid;
    }
    close $conn;
}

# resetting_server(port): a server on 127.0.0.1:port that reads what a
# connection sends for 0.6 s, then resets it. Stopped at exit.
sub resetting_server {
    my ($port) = @_;
    my $listener = IO::Socket::INET->new(LocalAddr => "127.0.0.1:$port",
                                         Listen => 64, ReuseAddr => 1)
        or die "cannot listen on 127.0.0.1:$port: $!";
    my $pid = fork // die "fork: $!";
    if ($pid) {
        close $listener;
        push @Servers, $pid;
        return $pid;
    }
    while (my $conn = $listener->accept) {
        my $select = IO::Select->new($conn);
        my $until = time + 0.6;
        while ((my $left = $until - time) > 0) {
            last unless $select->can_read($left);
            last unless sysread $conn, my $chunk, 65536;
        }
        setsockopt($conn, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
        close $conn;
    }
    POSIX::_exit(0);
}

# run_command("shell command"): (exit code, stdout and stderr together).
sub run_command {
    my $out = `$_[0] 2>&1`;
    return ($? >> 8, $out);
}

# elf_facts(path): what readelf says of a binary's debug information:
# stripped (no .symtab, no .debug_info), line_tables (.debug_line),
# debuglink (the file name its .gnu_debuglink names), build_id.
sub elf_facts {
    my ($path) = @_;
    my (undef, $sections) = run_command("readelf -S --wide $path");
    my (undef, $notes) = run_command("readelf -n $path");
    my (undef, $link) = $sections =~ /\.gnu_debuglink/
        ? run_command("readelf --string-dump=.gnu_debuglink $path")
        : (0, '');
    my ($debuglink) = $link =~ /\]\s+(\S+)/;
    my ($build_id) = $notes =~ /Build ID: ([0-9a-f]+)/;
    return {
        stripped => $sections !~ /\.debug_info|\.symtab/,
        line_tables => $sections =~ /\.debug_line/ ? 1 : 0,
        debuglink => $debuglink,
        build_id => $build_id,
    };
}

# grpc_server(port, cert => path, key => path, log => path): the test
# gRPC server (t/lib/grpc_server.py, on Debian's python3-grpcio) on
# 127.0.0.1:port, over TLS with cert and key; log gets a line per call it
# saw end. Returns once it accepts connections; stopped at exit.

sub grpc_server {
    my ($port, %opt) = @_;
    my @args = ($port);
    push @args, $opt{cert}, $opt{key} if $opt{cert};
    push @args, $opt{log} if $opt{log};
    return python_server('grpc_server.py', $port, @args);
}

# h2_hostile(port): the misbehaving HTTP/2 server of t/lib/h2_hostile.py
# (on Debian's python3-h2) on 127.0.0.1:port; stopped at exit.
sub h2_hostile {
    my ($port) = @_;
    return python_server('h2_hostile.py', $port, $port);
}

sub python_server {
    my ($script, $port, @args) = @_;
    $script = __FILE__ =~ s{ProxyWasmTest\.pm$}{$script}r;
    return server_process($port, '/usr/bin/python3', $script, @args);
}

# redis_server(port): Debian's redis-server on 127.0.0.1:port, with
# nothing saved to disk; stopped at exit.
sub redis_server {
    my ($port) = @_;
    return server_process($port, '/usr/bin/redis-server', '--port', $port,
                          '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
                          '--dir', File::Spec->tmpdir, '--logfile', '');
}

# A server process on 127.0.0.1:port, once it accepts connections; stopped
# at exit.
sub server_process {
    my ($port, @command) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>', '/dev/null';
        exec(@command) or POSIX::_exit(127);
    }
    push @Servers, $pid;
    for (1 .. 100) {
        my $peer = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port");
        return $pid if $peer;
        die "$command[-1] did not start" if waitpid($pid, POSIX::WNOHANG()) == $pid;
        sleep 0.1;
    }
    die "@command does not listen on 127.0.0.1:$port";
}

END {
    # waitpid sets $?, which is the script's exit status here
    local $?;
    for my $pid (@Servers) {
        kill 'TERM', $pid;
        waitpid $pid, 0;
    }
}

# stop_process(pid): ends a process a helper started, and waits for it.
sub stop_process {
    my ($pid) = @_;
    kill 'TERM', $pid;
    waitpid $pid, 0;
}

# fuzz_directives(count => 200, seed => N, wat => 'path/to/module.wat'):
# writes `count` configurations that put the module's directives, in
# random order, with random arguments (numbers, sizes, times, flags,
# quotes, long and odd names, paths), in their contexts, and runs
# `nginx -t` on each. Returns the failures: an nginx that crashed, hung or
# ended otherwise than 0 or 1, or refused a configuration without exactly
# one [emerg] line naming the file and line.
sub fuzz_directives {
    my %a = (count => 200, seed => 1, @_);
    srand $a{seed};
    my $dir = tempdir(CLEANUP => 1);
    mkdir "$dir/$_" for qw(conf logs);
    my @modules = map { "load_module $_;\n" }
                  split ' ', ($ENV{TEST_NGINX_LOAD_MODULES} || '');
    my $pick = sub { $_[int rand @_] };
    my $arg = sub {
        $pick->('0', '-1', '1', '65536', '4294967296', '99999999999999999999',
                '1k', '64m', '1x', 'k', '1s', '0ms', '-5s', '999999999d',
                'on', 'off', 'maybe', '*', 'a', 'm', 'auth', '""', "''",
                '"a b"', '"a;b"', 'a' x 5000, '"\\"q"', "\xc3\xa9",
                '$request_id', '$bogus', 'eviction=lru', 'eviction=x',
                'eviction=', 'share=a,b', 'size=', '/nonexistent',
                '/dev/null', $a{wat}, "$dir/cache", 'none', 'stream',
                'filter', 'reload', 'fail_open', 'fail_closed', '500',
                '99', '600', 'request.id', 'x.y', 'ngx.v', '4', '8k',
                'cranelift', 'winch', 'auto', 'error', 'warn', 'debug',
                '127.0.0.1', '[::1]', 'valid=1s');
    };
    my $args = sub { join ' ', map { $arg->() } 1 .. int rand 4 };
    my @main = qw(module compiler backtraces memory_limit callback_timeout
                  instance_pool cache resolver resolver_timeout
                  http_call_max_body_size http_call_failure_log
                  socket_connect_timeout socket_send_timeout
                  socket_read_timeout tls_verify_cert tls_verify_host
                  tls_trusted_certificate shm_kv shm_queue);
    my @http = qw(proxy_wasm proxy_wasm_request_headers_in_access
                  proxy_wasm_isolation proxy_wasm_failure
                  proxy_wasm_failure_status proxy_wasm_hold_timeout
                  proxy_wasm_property proxy_wasm_metrics
                  wasm_response_body_buffers wasm_response_body_overflow);
    my @failures;
    for my $i (1 .. $a{count}) {
        my $wasm = "    module m $a{wat};\n";
        $wasm .= "    $_ " . $args->() . ";\n" for map { $pick->(@main) } 1 .. 1 + int rand 3;
        $wasm .= "    metrics { slab_size " . $args->() . "; max_metric_name_length "
                 . $args->() . "; }\n" if rand() < 0.2;
        my $location = join '', map { "            $_ " . $args->() . ";\n" }
                       map { $pick->(@http) } 1 .. 1 + int rand 3;
        my $conf = join('', @modules) . <<"END";
error_log stderr;
pid $dir/logs/nginx.pid;
wasm {
$wasm}
events { }
http {
    access_log off;
    server {
        listen 127.0.0.1:1;
        location / {
$location            proxy_wasm m;
        }
    }
}
END
        open my $fh, '>', "$dir/conf/nginx.conf" or die $!;
        print $fh $conf;
        close $fh;
        my $out = `timeout 30 $ENV{TEST_NGINX_BINARY} -t -p $dir/ -c conf/nginx.conf 2>&1`;
        my $status = $?;
        my $emerg = () = $out =~ /\[emerg\]/g;
        my $why;
        if ($status & 127) {
            $why = 'killed by signal ' . ($status & 127);
        } elsif ($status >> 8 == 124) {
            $why = 'hung';
        } elsif ($status >> 8 > 1) {
            $why = 'exit status ' . ($status >> 8);
        } elsif ($status && ($emerg != 1 || $out !~ /\[emerg\] .* in \S+nginx\.conf:\d+$/m)) {
            $why = "no single [emerg] line with the file and line";
        }
        push @failures, "configuration $i: $why\n$conf\n$out" if $why;
    }
    return @failures;
}

1;
