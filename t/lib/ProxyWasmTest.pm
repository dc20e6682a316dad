package ProxyWasmTest;

# Helpers for this project's .t files, on Test::Nginx's public API only (so
# the files still run under upstream Test::Nginx).

use strict;
use warnings;

use Exporter 'import';
our @EXPORT = qw(default_modules test_certificates trap_storm);

use File::Temp qw(tempdir);
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(sleep time);

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
        my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                         PeerPort => $port, Timeout => 5);
        my $status = 0;
        if ($sock) {
            print $sock "GET $a{trap} HTTP/1.1\r\nHost: localhost\r\n"
                        . "Connection: close\r\n\r\n";
            my $line = <$sock> // '';
            $status = $1 if $line =~ m{^HTTP/1\.\d (\d+)};
            close $sock;
        }
        push @traps, $status;
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

1;
