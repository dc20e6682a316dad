package Test::Nginx::Socket;

# The project's own runner for Test::Nginx::Socket-style .t files (the
# same data-driven syntax, so the files also run under upstream
# Test::Nginx). Blocks run in file order; each block gets a fresh nginx on
# random 127.0.0.1 ports, which is stopped before its error log is checked.
#
# Environment:
#   TEST_NGINX_BINARY        nginx to run (default: nginx in PATH)
#   TEST_NGINX_LOAD_MODULES  .so files to load_module, in order
#   TEST_NGINX_SERVROOT      where to put configurations and logs
#   TEST_NGINX_*             expanded as $TEST_NGINX_* in the blocks
# Set for the blocks: TEST_NGINX_SERVER_PORT, TEST_NGINX_RAND_PORT_1..9,
# TEST_NGINX_SERVROOT, TEST_NGINX_HTML_DIR, TEST_NGINX_VERSION.

use strict;
use warnings;

use Test::Base;
use Test::More ();
use Cwd qw(abs_path cwd);
use File::Basename qw(basename);
use File::Path qw(make_path remove_tree);
use IO::Select;
use Socket ();
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);

our @EXPORT = qw(run_tests repeat_each workers master_on master_off
                 log_level no_shuffle no_long_string no_root_location
                 env_to_nginx add_block_preprocessor blocks plan
                 is isnt ok like unlike is_deeply diag note pass fail
                 done_testing);

my $Workers = 1;
my $MasterOn = 1;
my $LogLevel = 'debug';
my $RepeatEach = 1;
my @EnvToNginx;
my @Preprocessors;
my $NoPlan = 0;

sub import {
    my ($class, @args) = @_;
    my $caller = caller;

    no strict 'refs';
    for my $name (@EXPORT) {
        my $code = defined &{"Test::Nginx::Socket::$name"}
                 ? \&{"Test::Nginx::Socket::$name"}
                 : defined &{"Test::More::$name"} ? \&{"Test::More::$name"}
                 : \&{"Test::Base::$name"};
        *{"${caller}::$name"} = $code;
    }

    $NoPlan = 1 if grep { $_ eq 'no_plan' } @args;
}

sub repeat_each { $RepeatEach = shift if @_; $RepeatEach }
sub workers { $Workers = shift }
sub master_on { $MasterOn = 1 }
sub master_off { $MasterOn = 0 }
sub log_level { $LogLevel = shift }
sub no_shuffle { }
sub no_long_string { }
sub no_root_location { }
sub env_to_nginx { push @EnvToNginx, @_ }
sub add_block_preprocessor { push @Preprocessors, shift }

my $Top = abs_path(cwd());
my $Nginx = $ENV{TEST_NGINX_BINARY} || 'nginx';
my $Servroot;
my $NginxPid;
my ($NginxVersion) = (`$Nginx -v 2>&1` =~ m{nginx/(\d+\.\d+\.\d+)});
$NginxVersion ||= '0.0.0';
$ENV{TEST_NGINX_VERSION} = $NginxVersion;

sub version_at_least {
    my @want = split /\./, shift;
    my @have = split /\./, $NginxVersion;
    for my $i (0 .. 2) {
        return 1 if $have[$i] > $want[$i];
        return 0 if $have[$i] < $want[$i];
    }
    return 1;
}

# n free ports, all different: each is held until all are found (the
# kernel may hand out a port it just took back)
sub free_ports {
    my ($n) = @_;
    my @socks = map {
        IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                              LocalPort => 0, Proto => 'tcp', ReuseAddr => 1)
            or die "cannot find a free port: $!";
    } 1 .. $n;
    my @ports = map { $_->sockport } @socks;
    close $_ for @socks;
    return @ports;
}

sub expand_env {
    my $text = shift;
    return $text unless defined $text && !ref $text;
    $text =~ s/\$(TEST_NGINX_[A-Z0-9_]+)/defined $ENV{$1} ? $ENV{$1} : "\$$1"/ge;
    return $text;
}

# The value of a section, with $TEST_NGINX_* expanded.
sub section {
    my ($block, $name) = @_;
    my @values = $block->$name;
    return undef unless @values && defined $values[0];
    return expand_env($values[0]) unless ref $values[0];
    return $values[0];
}

# A section as a list of patterns: lines of text, or the values of an eval
# (its plain strings with $TEST_NGINX_* expanded, as lines of text are).
sub patterns {
    my ($block, $name) = @_;
    my @values = $block->$name;
    return () unless @values && defined $values[0];
    if (ref $values[0]) {
        return map { ref $_ ? $_ : expand_env($_) }
               map { ref $_ eq 'ARRAY' ? @$_ : $_ } @values;
    }
    return grep { length } map { expand_env($_) } split /\n/, $values[0];
}

# Writes nginx.conf for a block; %override replaces some of its sections
# (a reload's new configuration).
sub write_config {
    my ($block, $port, %override) = @_;
    my $section = sub { exists $override{$_[0]} ? $override{$_[0]} : section($block, $_[0]) };

    my $conf = "$Servroot/conf/nginx.conf";
    my $workers = section($block, 'workers') // $Workers;
    my $master = defined $block->master_off ? 'off'
               : defined $block->master_on ? 'on'
               : $MasterOn ? 'on' : 'off';
    my $level = section($block, 'log_level') // $LogLevel;
    my $modules = join '', map { "load_module $_;\n" }
                  split ' ', ($ENV{TEST_NGINX_LOAD_MODULES} || '');
    my $env = join '', map { "env $_;\n" } @EnvToNginx;
    my $main = $section->('main_config') // '';
    my $http = $section->('http_config') // '';
    my $config = $section->('config') // '';
    my $server = section($block, 'server_config') // '';

    # "--- stream_config" (stream{}) and "--- stream_server_config" (its
    # server on $TEST_NGINX_STREAM_PORT): a stream{} block when either is
    # there
    my $stream = '';
    my $stream_main = $section->('stream_config');
    my $stream_server = $section->('stream_server_config');
    if (defined $stream_main || defined $stream_server) {
        my $server_block = defined $stream_server ? <<"END" : '';
    server {
        listen 127.0.0.1:$ENV{TEST_NGINX_STREAM_PORT};
$stream_server
    }
END
        $stream = "stream {\n" . ($stream_main // '') . "\n$server_block}\n";
    }

    # "--- http2": the server speaks HTTP/2 (prior knowledge)
    my ($http2_listen, $http2_directive) = ('', '');
    if (defined $block->http2) {
        if (version_at_least('1.25.1')) {
            $http2_directive = 'http2 on;';
        } else {
            $http2_listen = ' http2';
        }
    }

    open my $fh, '>', $conf or die "cannot write $conf: $!";
    print $fh <<"END";
# generated by the test harness for: ${\ $block->name }
$modules
daemon off;
master_process $master;
worker_processes $workers;
error_log logs/error.log $level;
pid logs/nginx.pid;
$env
$main

$stream
events {
    accept_mutex off;
    worker_connections 256;
}

http {
    access_log logs/access.log;
    default_type text/plain;
    keepalive_timeout 68s;
    client_body_temp_path $Servroot/tmp/client_body;
    proxy_temp_path $Servroot/tmp/proxy;
    fastcgi_temp_path $Servroot/tmp/fastcgi;
    uwsgi_temp_path $Servroot/tmp/uwsgi;
    scgi_temp_path $Servroot/tmp/scgi;

$http

    server {
        listen 127.0.0.1:$port$http2_listen;
        $http2_directive
        server_name localhost;
        client_max_body_size 30M;
        root $Servroot/html;
$server

$config
    }
}
END
    close $fh;
}

sub read_file {
    my $path = shift;
    open my $fh, '<', $path or return '';
    local $/;
    my $text = <$fh>;
    close $fh;
    return $text // '';
}

sub nginx_pid {
    my $pid = read_file("$Servroot/logs/nginx.pid");
    $pid =~ s/\s+//g;
    return $pid =~ /^\d+$/ ? $pid : undef;
}

sub wait_for_port {
    my ($port, $timeout) = @_;
    my $deadline = time + $timeout;
    do {
        my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                         PeerPort => $port, Proto => 'tcp');
        if ($sock) {
            close $sock;
            return 1;
        }
        sleep 0.01;
    } while (time < $deadline);
    return 0;
}

# Starts nginx as a child process (not daemonized: the harness reaps it
# itself); returns (ok, what nginx printed).
sub start_nginx {
    my ($port) = @_;
    my $output = "$Servroot/logs/stderr.log";

    $NginxPid = fork;
    die "cannot fork: $!" unless defined $NginxPid;
    if ($NginxPid == 0) {
        open STDOUT, '>', $output or die;
        open STDERR, '>&', \*STDOUT or die;
        exec $Nginx, '-p', "$Servroot/", '-c', 'conf/nginx.conf' or exit 127;
    }

    my $deadline = time + 10;
    until (nginx_pid() && wait_for_port($port, 0.02)) {
        if (waitpid($NginxPid, WNOHANG) == $NginxPid) {
            undef $NginxPid;
            return (0, read_file($output));
        }
        if (time > $deadline) {
            stop_nginx();
            return (0, read_file($output) . "(port $port never accepted)");
        }
    }
    return (1, read_file($output));
}

# Stops nginx gracefully (QUIT); false if it had to be killed.
sub stop_nginx {
    return 1 unless $NginxPid;
    kill 'QUIT', $NginxPid;
    my $deadline = time + 10;
    my $graceful = 1;
    until (waitpid($NginxPid, WNOHANG) == $NginxPid) {
        if (time > $deadline) {
            Test::More::diag("nginx $NginxPid did not stop gracefully: killed");
            kill 'KILL', $NginxPid;
            waitpid $NginxPid, 0;
            $graceful = 0;
            last;
        }
        sleep 0.005;
    }
    undef $NginxPid;
    return $graceful;
}

END {
    stop_nginx();
}

# HTTP/1.x over a socket.

# The requests of a block: one, or a list from "--- request eval". Each is
# a list of pieces to send (a raw request given as a list is sent in
# pieces, "--- raw_request_middle_delay" apart).
sub build_requests {
    my ($block) = @_;

    my $raw = section($block, 'raw_request');
    return ref $raw ? ([map { expand_env($_) } @$raw]) : ([$raw]) if defined $raw;

    my $request = section($block, 'request');
    return () unless defined $request;

    # a code reference among the requests runs there instead (e.g. to
    # signal a worker between two requests)
    # more_headers: for every request, or (an eval's list) one per request
    my $headers = section($block, 'more_headers') // '';
    my @requests = ref $request ? @$request : ($request);
    my $i = 0;
    return map {
        my $h = ref $headers ? expand_env($headers->[$i] // '') : $headers;
        $i++;
        ref eq 'CODE' ? $_ : [build_request($_, $h)]
    } @requests;
}

sub build_request {
    my ($request, $headers) = @_;

    my ($line, $body) = split /\n/, expand_env($request), 2;
    $line =~ s/^\s+|\s+$//g;
    $line .= ' HTTP/1.1' unless $line =~ m{ HTTP/\d\.\d$};

    my @headers = grep { length } split /\n/, $headers;
    my %seen = map { lc((split /:/, $_)[0]) => 1 } @headers;

    push @headers, 'Host: localhost' unless $seen{host};
    push @headers, 'Connection: close' unless $seen{connection};
    if (defined $body && length $body && !$seen{'content-length'}
        && !$seen{'transfer-encoding'})
    {
        push @headers, 'Content-Length: ' . length $body;
    }

    return join("\r\n", $line, @headers) . "\r\n\r\n" . ($body // '');
}

sub http_connect {
    my ($port, $timeout) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                     Proto => 'tcp', Timeout => $timeout)
        or return undef;
    binmode $sock;
    $sock->autoflush(1);
    return $sock;
}

sub http_send {
    my ($sock, $pieces, $delay) = @_;
    for my $i (0 .. $#$pieces) {
        sleep $delay if $i > 0;
        print $sock $pieces->[$i];
    }
}

sub http_read {
    my ($sock, $timeout) = @_;
    my $select = IO::Select->new($sock);
    my $response = '';
    my $deadline = time + $timeout;
    while (1) {
        my $left = $deadline - time;
        return ($response, 'timeout') if $left <= 0;
        last unless $select->can_read($left);
        my $n = sysread $sock, my $chunk, 65536;
        last unless $n;
        $response .= $chunk;
    }
    close $sock;
    return ($response, undef);
}

sub http_exchange {
    my ($port, $pieces, $timeout, $delay) = @_;
    my $sock = http_connect($port, $timeout) or return (undef, "cannot connect: $!");
    http_send($sock, $pieces, $delay);
    return http_read($sock, $timeout);
}

# HTTP/2 (prior knowledge) with curl: the block's request and headers.
sub http2_exchange {
    my ($block, $port, $timeout) = @_;
    my $request = section($block, 'request');
    my ($line, $body) = split /\n/, $request, 2;
    my ($method, $uri) = split ' ', $line;
    # no response expected: curl's complaint about it is no news
    my $quiet = (expected($block, 'error_code', 0) // 'x') eq '';
    my @cmd = ('curl', $quiet ? '-s' : '-sS', '--http2-prior-knowledge', '-X', $method,
               '--max-time', $timeout, '-D', "$Servroot/logs/curl.headers",
               '-o', "$Servroot/logs/curl.body");
    for my $h (grep { length } split /\n/, section($block, 'more_headers') // '') {
        push @cmd, '-H', $h;
    }
    if (defined $body && length $body) {
        open my $fh, '>', "$Servroot/logs/curl.request" or die;
        print $fh $body;
        close $fh;
        push @cmd, '--data-binary', "\@$Servroot/logs/curl.request";
    }
    push @cmd, "http://127.0.0.1:$port$uri";
    system(@cmd) == 0 or return (undef, "curl failed: $?");
    my $head = read_file("$Servroot/logs/curl.headers");
    $head =~ s/\r\n\r\n.*//s;
    my %headers;
    my ($status_line, @lines) = split /\r\n/, $head;
    my ($status) = $status_line =~ m{^HTTP/\S+ (\d+)};
    for my $line (@lines) {
        my ($name, $value) = $line =~ /^([^:]+):\s*(.*)$/ or next;
        push @{ $headers{lc $name} }, $value;
    }
    return ({ status => $status, headers => \%headers,
              body => read_file("$Servroot/logs/curl.body") }, undef);
}

sub dechunk {
    my $body = shift;
    my $out = '';
    while ($body =~ s/^([0-9a-fA-F]+)[^\r\n]*\r\n//) {
        my $size = hex $1;
        last if $size == 0;
        $out .= substr $body, 0, $size, '';
        $body =~ s/^\r\n//;
    }
    return $out;
}

sub parse_response {
    my $raw = shift;
    # interim responses (100 Continue) come first
    $raw =~ s{\AHTTP/\d\.\d 1\d\d [^\r\n]*\r\n(?:[^\r\n]+\r\n)*\r\n}{}g;
    my ($head, $body) = split /\r\n\r\n/, $raw, 2;
    return undef unless defined $head && $head =~ m{^HTTP/\d\.\d (\d+)};
    my $status = $1;
    my %headers;
    my (undef, @lines) = split /\r\n/, $head;
    for my $line (@lines) {
        my ($name, $value) = $line =~ /^([^:]+):\s*(.*)$/ or next;
        push @{ $headers{lc $name} }, $value;
    }
    $body //= '';
    if (($headers{'transfer-encoding'}[0] // '') =~ /chunked/i) {
        $body = dechunk($body);
    } elsif (defined $headers{'content-length'}) {
        # what follows is the next response on the connection
        $body = substr $body, 0, $headers{'content-length'}[0];
    }
    return { status => $status, headers => \%headers, body => $body, raw => $raw };
}

# Checks.

# The expectation for the i-th request of a block: a section's value, or
# its i-th element when the section is a list.
sub expected {
    my ($block, $name, $i) = @_;
    my $value = section($block, $name);
    return ref $value eq 'ARRAY' ? $value->[$i] : $value;
}

sub check_response {
    my ($block, $name, $res, $i) = @_;

    # an empty status code: no response at all (the connection closed)
    my $code = expected($block, 'error_code', $i);
    if (defined $code && $code eq '') {
        Test::More::ok(!$res, "$name - no response");
        return;
    }
    if (defined $code) {
        Test::More::is($res ? $res->{status} : undef, $code, "$name - status code ok");
    }

    my $expected = expected($block, 'response_body', $i);
    if (defined $expected) {
        if (ref $expected eq 'Regexp') {
            Test::More::like($res ? $res->{body} : '', $expected, "$name - response_body like");
        } else {
            Test::More::is($res ? $res->{body} : undef, $expected, "$name - response_body ok");
        }
    }

    my $raw_like = expected($block, 'raw_response_like', $i);
    if (defined $raw_like) {
        Test::More::like($res ? $res->{raw} : '', $raw_like, "$name - raw_response_like ok");
    }

    my $like = expected($block, 'response_body_like', $i);
    if (defined $like) {
        $like = qr/$like/s unless ref $like;
        Test::More::like($res ? $res->{body} : '', $like, "$name - response_body_like ok");
    }

    my $headers = $block->response_headers;
    my @header_lines = ref $headers eq 'ARRAY'
        ? grep { length } split /\n/, ($headers->[$i] // '')
        : patterns($block, 'response_headers');
    for my $line (@header_lines) {
        if ($line =~ /^!\s*(.+?)\s*$/) {
            Test::More::ok(!exists $res->{headers}{lc $1}, "$name - header $1 absent");
            next;
        }
        my ($h, $v) = $line =~ /^\s*([^:]+?)\s*:\s*(.*?)\s*$/ or next;
        my $got = $res->{headers}{lc $h};
        Test::More::is(defined $got ? join(', ', @$got) : undef, $v,
                       "$name - header $h ok");
    }

    for my $line (patterns($block, 'response_headers_like')) {
        my ($h, $v) = $line =~ /^\s*([^:]+?)\s*:\s*(.*?)\s*$/ or next;
        my $got = $res->{headers}{lc $h};
        Test::More::like(defined $got ? join(', ', @$got) : '', qr/^(?:$v)$/,
                         "$name - header $h like");
    }
}

sub log_matches {
    my ($log, $pattern) = @_;
    return ref $pattern eq 'Regexp' ? $log =~ $pattern : index($log, $pattern) >= 0;
}

sub check_log {
    my ($block, $name, $log, $section) = @_;
    $section //= 'error_log';

    for my $pattern (patterns($block, $section)) {
        Test::More::ok(log_matches($log, $pattern), "$name - $section: $pattern")
            or Test::More::diag("not found in the error log");
    }

    return if $section ne 'error_log';

    for my $pattern (patterns($block, 'no_error_log')) {
        Test::More::ok(!log_matches($log, $pattern), "$name - no_error_log: $pattern")
            or Test::More::diag(join "\n", grep { log_matches($_, $pattern) } split /\n/, $log);
    }

    my $grep = section($block, 'grep_error_log');
    if (defined $grep) {
        $grep = qr/\Q$grep\E/ unless ref $grep;
        my @found;
        while ($log =~ /($grep)/g) {
            push @found, $1;
        }
        my $expected = section($block, 'grep_error_log_out') // '';
        if (ref $expected eq 'Regexp') {
            Test::More::like(join("\n", @found) . "\n", $expected, "$name - grep_error_log_out like");
        } else {
            Test::More::is(join('', map { "$_\n" } @found), $expected, "$name - grep_error_log_out ok");
        }
    }
}

# Every block: no alert, emergency or critical line, and no crashed worker,
# unless the block says it expects one.
sub check_health {
    my ($block, $name, $log) = @_;

    my @expected = patterns($block, 'error_log');
    my @bad = grep {
        my $line = $_;
        $line =~ /\[(?:alert|emerg|crit)\]|exited on signal|runtime error: |ERROR: AddressSanitizer/
            && !grep { log_matches($line, $_) } @expected
    } split /\n/, $log;

    # sanitizer builds (util/test-env.sh 1.28.3-asan) write their reports
    # to files: each block owns the ones that appeared while it ran
    if (my $dir = $ENV{TEST_NGINX_SANITIZER_REPORTS}) {
        for my $report (glob "$dir/*.*") {
            push @bad, read_file($report);
            make_path("$dir/seen");
            rename $report, "$dir/seen/" . basename($report);
        }
    }

    Test::More::ok(!@bad, "$name - no [alert], [emerg], [crit], crash or sanitizer report")
        or Test::More::diag(join "\n", @bad);
}

sub run_block {
    my ($block, $file) = @_;

    $_->($block) for @Preprocessors;

    my $name = $block->name;

    if (my $skip = section($block, 'skip_eval')) {
        my $result = eval $skip;
        die "skip_eval of $name: $@" if $@;
        if ($result) {
            Test::More::pass("$name - skipped: $skip");
            return;
        }
    }

    my ($port, $stream_port, @rand) = free_ports(11);
    $ENV{TEST_NGINX_SERVER_PORT} = $port;
    $ENV{TEST_NGINX_STREAM_PORT} = $stream_port;
    $ENV{"TEST_NGINX_RAND_PORT_$_"} = $rand[$_ - 1] for 1 .. 9;

    remove_tree("$Servroot/logs");
    make_path("$Servroot/$_") for qw(conf logs html tmp);
    my $user_files = section($block, 'user_files');
    write_user_files($user_files) if defined $user_files;

    # "--- init": Perl code run before nginx starts
    if (my $init = section($block, 'init')) {
        eval $init;
        die "init of $name: $@" if $@;
    }

    write_config($block, $port);

    my $must_die = defined $block->must_die;
    my ($started, $out) = start_nginx($port);
    my $log_file = "$Servroot/logs/error.log";

    if ($must_die) {
        Test::More::ok(!$started, "$name - nginx refuses to start");
        stop_nginx() if $started;
        my $log = $out . read_file($log_file);
        check_log($block, $name, $log);
        return;
    }

    unless (Test::More::ok($started, "$name - nginx started")) {
        Test::More::diag($out . read_file($log_file));
        return;
    }

    my @requests = build_requests($block);
    my $timeout = section($block, 'timeout') // 10;
    $timeout =~ s/s$//;
    my $delay = section($block, 'raw_request_middle_delay') // 0.1;

    run_load($block, $name, $port, $timeout) if defined section($block, 'load');
    run_stream($block, $name, $stream_port, $timeout, $delay)
        if defined section($block, 'stream_request');

    for my $repeat (1 .. $RepeatEach) {
        my $label = sub {
            my $i = shift;
            return $name . (@requests > 1 ? " (request " . ($i + 1) . ")" : '')
                         . ($RepeatEach > 1 ? " (repeat $repeat)" : '');
        };

        if (defined $block->http2) {
            my ($res, $err) = http2_exchange($block, $port, $timeout);
            Test::More::diag("$name - request failed: $err")
                if $err && (expected($block, 'error_code', 0) // 'x') ne '';
            check_response($block, $label->(0), $res, 0);
            next;
        }

        # "--- concurrent": every request is sent, in order and
        # request_delay apart, before the responses are read.
        if (defined $block->concurrent) {
            my $gap = section($block, 'request_delay') // 0.2;
            my @socks;
            for my $i (0 .. $#requests) {
                sleep $gap if $i > 0;
                my $sock = http_connect($port, $timeout);
                http_send($sock, $requests[$i], $delay) if $sock;
                push @socks, $sock;
            }
            for my $i (0 .. $#requests) {
                my ($raw, $err) = $socks[$i] ? http_read($socks[$i], $timeout) : (undef, 'cannot connect');
                my $res = defined $raw ? parse_response($raw) : undef;
                check_response($block, $label->($i), $res, $i);
            }
            next;
        }

        # "--- request_delay": the time between requests (none by default)
        my $gap = section($block, 'request_delay') // 0;
        for my $i (0 .. $#requests) {
            sleep $gap if $i > 0 && $gap;
            if (ref $requests[$i] eq 'CODE') {
                $requests[$i]->();
                next;
            }
            my ($raw, $err) = http_exchange($port, $requests[$i], $timeout, $delay);
            next if defined section($block, 'abort');
            Test::More::diag($label->($i) . " - request failed: $err") if $err;
            my $res = defined $raw ? parse_response($raw) : undef;
            check_response($block, $label->($i), $res, $i);
        }
    }

    run_reload($block, $name, $port, $timeout) if defined $block->reload_config;

    if (my $wait = section($block, 'wait')) {
        sleep $wait;
    }

    Test::More::ok(stop_nginx(), "$name - nginx stopped gracefully");

    # what nginx printed at start-up (warnings while reading its
    # configuration), then its error log
    my $log = $out . read_file($log_file);
    check_log($block, $name, $log);
    check_log($block, $name, $log, 'shutdown_error_log');
    check_health($block, $name, $log);

    # "--- log_eval": Perl code that gets the error log in $_ and returns
    # true when it is right (for checks across log lines: pids, counts)
    if (my $code = section($block, 'log_eval')) {
        local $_ = $log;
        my $ok = eval $code;
        die "log_eval of $name: $@" if $@;
        Test::More::ok($ok, "$name - log_eval");
    }
}

# "--- stream_request": the bytes a client sends to the stream{} server
# (an eval's list: pieces sent raw_request_middle_delay apart); then it
# reads what comes back until nginx closes the connection, or it has as
# many bytes as "--- stream_response" (compared), or "--- stream_response_like"
# matches, or the timeout. "--- stream_reset": it resets the connection
# instead of reading. "--- stream_half_close": the client shuts its
# side down after sending. "--- stream_closed": it reads until nginx closes
# the connection, which it must do before the timeout.
sub run_stream {
    my ($block, $name, $port, $timeout, $delay) = @_;
    my $request = section($block, 'stream_request');
    my @pieces = map { expand_env($_) } (ref $request ? @$request : ($request));
    my $expected = section($block, 'stream_response');
    my $like = section($block, 'stream_response_like');

    # nginx may close the connection while the client still sends
    local $SIG{PIPE} = 'IGNORE';
    my $sock = http_connect($port, $timeout);
    unless (Test::More::ok($sock, "$name - stream connected")) {
        return;
    }
    http_send($sock, \@pieces, $delay);
    shutdown($sock, 1) if defined $block->stream_half_close;

    # "--- stream_reset": the client resets the connection after sending
    if (defined $block->stream_reset) {
        sleep 0.2;
        setsockopt($sock, Socket::SOL_SOCKET(), Socket::SO_LINGER(), pack('ii', 1, 0));
        close $sock;
        return;
    }

    my $select = IO::Select->new($sock);
    my $response = '';
    my $deadline = time + $timeout;
    my $closed = 0;
    my $until_closed = defined $block->stream_closed;
    while (1) {
        last if !$until_closed && defined $expected && length $response >= length $expected;
        last if !$until_closed && defined $like && $response =~ $like;
        my $left = $deadline - time;
        last if $left <= 0 || !$select->can_read($left);
        my $n = sysread $sock, my $chunk, 65536;
        unless ($n) {
            $closed = 1;
            last;
        }
        $response .= $chunk;
    }
    close $sock;

    if (defined $expected) {
        Test::More::is($response, $expected, "$name - stream response");
    }
    if (defined $like) {
        Test::More::like($response, $like, "$name - stream response like");
    }
    if (defined $block->stream_closed) {
        Test::More::ok($closed, "$name - nginx closed the connection");
    }
}

# "--- load: <requests> <concurrency> <request line>": before the block's
# requests, that many requests from that many client processes at once,
# each on a new connection; every one must get a 200.
sub run_load {
    my ($block, $name, $port, $timeout) = @_;

    my ($total, $concurrency, $line) = split ' ', section($block, 'load'), 3;
    my @pids;
    for my $client (1 .. $concurrency) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            my $failed = 0;
            for (my $i = $client; $i <= $total; $i += $concurrency) {
                my ($raw) = http_exchange($port, [build_request($line, '')], $timeout, 0);
                $failed++ unless defined $raw && $raw =~ m{^HTTP/1\.\d 200 };
            }
            POSIX::_exit($failed > 255 ? 255 : $failed);
        }
        push @pids, $pid;
    }
    my $failed = 0;
    for my $pid (@pids) {
        waitpid $pid, 0;
        $failed += $? >> 8;
    }
    Test::More::is($failed, 0, "$name - every request of the load got a 200");
}

# A reload under load. The block's request is sent again and again, each
# time on a new connection, from a child process, while nginx reloads
# with "--- reload_config" (after running the Perl code of "--- reload_init",
# if any). Every response must have the block's status (200 by default)
# and match one of the two patterns of "--- reload_response_like": the
# first response the first (the old configuration), the last the second.
# "--- reload_inflight" is a request sent just before the reload: its
# response must match the first pattern (old workers finish their
# requests).
sub run_reload {
    my ($block, $name, $port, $timeout) = @_;

    my ($request) = build_requests($block);
    my $record = "$Servroot/logs/reload.responses";
    my $flatten = sub {
        my ($raw, $err) = @_;
        return "none: " . ($err // 'no response') unless defined $raw && length $raw;
        (my $line = $raw) =~ s/\r?\n/ | /g;
        return $line;
    };

    # the loop ends between two requests, when this file appears
    my $stop = "$Servroot/logs/reload.stop";
    unlink $stop;
    my $loop = fork // die "cannot fork: $!";
    if ($loop == 0) {
        open my $out, '>', $record or POSIX::_exit(1);
        $out->autoflush(1);
        until (-e $stop) {
            print $out $flatten->(http_exchange($port, $request, $timeout, 0)), "\n";
        }
        close $out;
        POSIX::_exit(0);
    }

    my $inflight_record = "$Servroot/logs/reload.inflight";
    my $inflight;
    if (my $text = section($block, 'reload_inflight')) {
        $inflight = fork // die "cannot fork: $!";
        if ($inflight == 0) {
            my $response = $flatten->(http_exchange($port, [build_request($text, '')], $timeout, 0));
            open my $out, '>', $inflight_record or POSIX::_exit(1);
            print $out $response;
            close $out;
            POSIX::_exit(0);
        }
    }

    sleep 0.5;
    if (my $init = section($block, 'reload_init')) {
        eval $init;
        die "reload_init of $name: $@" if $@;
    }
    write_config($block, $port, config => section($block, 'reload_config'));
    kill 'HUP', $NginxPid;
    # builds that run slower (sanitizers) take longer to reload; a busy
    # machine too (new workers compile what the cache cannot give): the
    # loop goes on until the new configuration answers, for up to 10 s more
    my $slowdown = $ENV{TEST_NGINX_SLOWDOWN} || 1;
    sleep((section($block, 'reload_wait') // 1.5) * $slowdown);
    my $answered = section($block, 'reload_response_like')->[1];
    my $deadline = time + 10 * $slowdown;
    while (time < $deadline) {
        my @so_far = split /\n/, read_file($record);
        last if @so_far && $so_far[-1] =~ $answered;
        sleep 0.2;
    }
    open my $fh, '>', $stop or die "cannot write $stop: $!";
    close $fh;
    waitpid $loop, 0;
    waitpid $inflight, 0 if $inflight;

    my ($before, $after) = @{ section($block, 'reload_response_like') };
    my $status = section($block, 'error_code') // 200;
    my @responses = split /\n/, read_file($record);
    Test::More::cmp_ok(scalar @responses, '>=', 10, "$name - requests during the reload");
    my @bad = grep { !m{^HTTP/1\.\d $status } || !($_ =~ $before || $_ =~ $after) } @responses;
    Test::More::ok(!@bad, "$name - every response during the reload is whole and expected")
        or Test::More::diag(join "\n", @bad[0 .. ($#bad < 4 ? $#bad : 4)]);
    Test::More::like($responses[0] // '', $before, "$name - the old configuration first");
    Test::More::like($responses[-1] // '', $after, "$name - the new configuration last");
    if ($inflight) {
        Test::More::like(read_file($inflight_record), $before,
                         "$name - a request in flight finishes on the old configuration");
    }

    # "--- request_after_reload": one more request, with its status in
    # "--- error_code_after_reload"
    if (my $text = section($block, 'request_after_reload')) {
        my ($raw) = http_exchange($port, [build_request($text, '')], $timeout, 0);
        my $res = defined $raw ? parse_response($raw) : undef;
        Test::More::is($res ? $res->{status} : undef, section($block, 'error_code_after_reload') // 200,
                       "$name - the request after the reload");
    }
}

# "--- user_files": ">>> path" lines start files under the html dir.
sub write_user_files {
    my $spec = shift;
    my ($path, $content);
    my $flush = sub {
        return unless defined $path;
        my $full = "$Servroot/html/$path";
        (my $dir = $full) =~ s{/[^/]*$}{};
        make_path($dir);
        open my $fh, '>', $full or die "cannot write $full: $!";
        print $fh $content;
        close $fh;
    };
    for my $line (split /^/, $spec) {
        if ($line =~ /^>>> (\S+)/) {
            $flush->();
            ($path, $content) = ($1, '');
        } else {
            $content .= $line;
        }
    }
    $flush->();
}

sub run_tests {
    my $file = basename($0, '.t');
    $Servroot = $ENV{TEST_NGINX_SERVROOT} || "$Top/t/servroot";
    $Servroot = "$Servroot/$file";
    $ENV{TEST_NGINX_SERVROOT} = $Servroot;
    $ENV{TEST_NGINX_HTML_DIR} = "$Servroot/html";

    # Test::Base's END block needs to see a plan; the count is known only
    # at the end.
    Test::More::plan('no_plan');

    # "--- ONLY" in a block runs that block alone (while debugging it)
    my @blocks = Test::Base::blocks();
    my @only = grep { defined $_->ONLY } @blocks;
    for my $block (@only ? @only : @blocks) {
        run_block($block, $file);
    }
}

1;
