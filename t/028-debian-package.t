# The Debian package of "make deb", as a user of Debian's nginx meets it:
# installed with dpkg next to the stock /usr/sbin/nginx (and its Lua
# module), enabled by its modules-enabled link, serving a request through
# the example filter, then removed and purged without a trace.
#
# It installs a package on the machine: "make test-deb" runs it, as root,
# with TEST_NGINX_DEB_DIR (the packages' directory); prove -r t/ skips it.

use strict;
use warnings;

use Cwd ();
use File::Temp qw(tempdir);
use IO::Socket::INET;
use Test::More;

use lib 't/lib';
use ProxyWasmTest qw(run_command elf_facts);

my $dir = $ENV{TEST_NGINX_DEB_DIR}
    or plan skip_all => 'make test-deb runs it (TEST_NGINX_DEB_DIR unset)';
plan skip_all => 'installs a package: needs root' if $> != 0;

my $package = 'libnginx-mod-http-proxy-wasm';
my ($deb) = grep { !/-dbgsym_/ } glob "$dir/${package}_*.deb";
my ($dbgsym) = glob "$dir/${package}-dbgsym_*.deb";
ok($deb, "the package is built") or BAIL_OUT("no $package in $dir");
ok($dbgsym, "its debug symbols are a package of their own");

# network filters: a package of their own, on Debian's stream module
my $stream_package = 'libnginx-mod-stream-proxy-wasm';
my ($stream_deb) = grep { !/-dbgsym_/ } glob "$dir/${stream_package}_*.deb";
ok($stream_deb, "the stream package is built") or BAIL_OUT("no $stream_package in $dir");
my $stream_so = '/usr/lib/nginx/modules/ngx_stream_proxy_wasm_module.so';
my $stream_enabled = '/etc/nginx/modules-enabled/70-mod-stream-proxy-wasm.conf';
my $network_filter = Cwd::getcwd() . "/build/filters/network.wasm";

my $so = '/usr/lib/nginx/modules/ngx_proxy_wasm_module.so';
my $available = '/usr/share/nginx/modules-available/mod-http-proxy-wasm.conf';
my $enabled = '/etc/nginx/modules-enabled/60-mod-http-proxy-wasm.conf';
my $examples = "/usr/share/doc/$package/examples";

sub installed {
    my ($rc, $status) = run_command("dpkg-query -W -f='\${Status}' $_[0]");
    return $rc == 0 && $status =~ /ok installed/;
}

# a run that failed halfway left it behind
run_command("dpkg --purge $stream_package-dbgsym $stream_package") if installed($stream_package);
run_command("dpkg --purge $package-dbgsym $package") if installed($package);

# what the package declares
my (undef, $provides) = run_command("dpkg-query -W -f='\${Provides}' nginx");
my ($abi) = $provides =~ /(nginx-abi-[\w.~+-]+)/;
ok($abi, "the installed nginx provides an ABI ($abi)");
my (undef, $depends) = run_command("dpkg-deb -f $deb Depends");
like($depends, qr/(^|[\s,])\Q$abi\E([\s,]|$)/,
     "the package depends on that nginx ABI");
my (undef, $stream_depends) = run_command("dpkg-deb -f $stream_deb Depends");
like($stream_depends, qr/(^|[\s,])\Q$abi\E([\s,]|$)/,
     "the stream package depends on that nginx ABI");
like($stream_depends, qr/libnginx-mod-stream(,|$)/, "and on Debian's stream module");
like($stream_depends, qr/\Q$package\E \(= /, "and on the HTTP package of its version");

my (undef, $contents) = run_command("dpkg-deb -c $deb");
like($contents, qr{ \./usr/lib/nginx/modules/ngx_proxy_wasm_module\.so$}m,
     "the module is installed where Debian's modules are");
like($contents, qr{ \.\Q$available\E$}m, "with its load snippet");
like($contents, qr{ \.\Q$examples\E/hello\.wasm$}m, "and the example filter");

# stripped, with the debug information in the -dbgsym package
my $x = tempdir(CLEANUP => 1);
run_command("dpkg-deb -x $deb $x/pkg");
my $elf = elf_facts("$x/pkg$so");
ok($elf->{stripped}, "the module is stripped");
my $build_id = $elf->{build_id};
ok($build_id, "the module has a build id");
my (undef, $dbg_contents) = run_command("dpkg-deb -c $dbgsym");
my $debug_file = defined $build_id
    ? '/usr/lib/debug/.build-id/' . substr($build_id, 0, 2) . '/'
      . substr($build_id, 2) . '.debug'
    : '(none)';
like($dbg_contents, qr{ \.\Q$debug_file\E$}m,
     "the -dbgsym package has its debug information");
my $size = -s "$x/pkg$so";
cmp_ok($size, '<', 40 << 20, "the module is $size bytes");

# installed: enabled, and the stock configuration still tests fine
my ($rc, $out) = run_command("dpkg -i $deb $dbgsym $stream_deb");
is($rc, 0, "dpkg installs them") or diag($out);
ok(-f $stream_so, "the stream module is installed");
ok(-l $stream_enabled, "the stream module is enabled (modules-enabled)");
ok(-f $so, "the module is installed");
is(readlink($enabled), $available, "the module is enabled (modules-enabled)");
# nginx.conf includes modules-enabled/*.conf in glob order
my @load_order = map { m{/\d+-mod-(.+)\.conf$} } glob '/etc/nginx/modules-enabled/*.conf';
my %position = map { $load_order[$_] => $_ } 0 .. $#load_order;
ok(defined $position{'http-lua'} && defined $position{'http-proxy-wasm'}
       && $position{'http-lua'} < $position{'http-proxy-wasm'},
   "the module loads after Lua's (@load_order)");
ok(defined $position{'stream'} && defined $position{'stream-proxy-wasm'}
       && $position{'stream'} < $position{'stream-proxy-wasm'}
       && $position{'http-proxy-wasm'} < $position{'stream-proxy-wasm'},
   "the stream module loads after nginx's stream module and the HTTP module (@load_order)");
ok(-f $debug_file, "the debug information is found by build id");
($rc, $out) = run_command('/usr/sbin/nginx -t');
is($rc, 0, "nginx -t passes with the stock configuration") or diag($out);

# the stock nginx serves a request through the example filter, with the
# Lua module loaded before this one (its link's lower priority)
my $prefix = tempdir(CLEANUP => 1);
chmod 0755, $prefix;
sub free_port {
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                  LocalPort => 0, Proto => 'tcp');
    my $p = $s->sockport;
    close $s;
    return $p;
}
my $port = free_port();
my $tcp_port = free_port();
mkdir "$prefix/logs";
open my $conf, '>', "$prefix/nginx.conf" or die $!;
print $conf <<"END";
include /etc/nginx/modules-enabled/*.conf;
worker_processes 1;
error_log $prefix/logs/error.log notice;
pid $prefix/logs/nginx.pid;
events {}
wasm {
    module hello $examples/hello.wasm;
    module network $network_filter;
}
stream {
    server {
        listen 127.0.0.1:$tcp_port;
        proxy_wasm network "rewrite /old /hello";
        proxy_pass 127.0.0.1:$port;
    }
}
http {
    access_log off;
    client_body_temp_path $prefix/body;
    proxy_temp_path $prefix/proxy;
    fastcgi_temp_path $prefix/fastcgi;
    uwsgi_temp_path $prefix/uwsgi;
    scgi_temp_path $prefix/scgi;
    server {
        listen 127.0.0.1:$port;
        proxy_wasm hello "Hello from the package";
        location / {
            content_by_lua_block { ngx.say("lua sees x-hello: ", ngx.var.http_x_hello) }
        }
        # resty.proxy_wasm, found where Debian keeps Lua libraries
        location /lua {
            proxy_wasm_isolation none;
            rewrite_by_lua_block {
                local proxy_wasm = require "resty.proxy_wasm"
                CHAIN = CHAIN or proxy_wasm.new({ { name = "hello", config = "Hello from Lua" } })
                assert(proxy_wasm.attach(CHAIN))
            }
            content_by_lua_block { ngx.say("lua sees x-hello: ", ngx.var.http_x_hello) }
        }
    }
}
END
close $conf;

($rc, $out) = run_command("/usr/sbin/nginx -c $prefix/nginx.conf");
is($rc, 0, "the stock nginx starts with the module") or diag($out);

sub get {
    my ($path, $to) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:" . ($to // $port),
                                  Timeout => 5) or return '';
    print $s "GET $path HTTP/1.0\r\nHost: localhost\r\n\r\n";
    local $/;
    my $response = <$s> // '';
    close $s;
    return $response;
}

like(get('/hello'), qr{^HTTP/1\.1 200 .*\r\nx-answered-by: hello\.wasm\r\n(?:[^\r]+\r\n)*\r\nHello from the package\n$}s,
     "the filter answers /hello");
like(get('/'), qr{\r\nx-powered-by: ngx_proxy_wasm\r\n(?:[^\r]+\r\n)*\r\nlua sees x-hello: Hello from the package\n$}s,
     "the filter sets a request header Lua's content handler sees, and adds a response header");
like(get('/lua'), qr{\r\n\r\nlua sees x-hello: Hello from Lua\n$}s,
     "the package's Lua library attaches a chain built in Lua");
like(get('/old', $tcp_port), qr{\r\nx-answered-by: hello\.wasm\r\n(?:[^\r]+\r\n)*\r\nHello from the package\n$}s,
     "a network filter in stream{} rewrites a connection's data (/old to /hello)");

my $pid = do { local (@ARGV, $/) = "$prefix/logs/nginx.pid"; <> };
chomp $pid if defined $pid;
kill 'QUIT', $pid if $pid;
for (1 .. 50) { last unless $pid && kill 0, $pid; select undef, undef, undef, 0.1 }
ok(!($pid && kill 0, $pid), "nginx stops");

my $log = do { local (@ARGV, $/) = "$prefix/logs/error.log"; <> } // '';
like($log, qr/\[notice\] \d+#\d+: ngx_proxy_wasm [\d.]+, wasmtime [\d.]+$/m,
     "the start-up notice names the versions");
unlike($log, qr/\[(alert|crit|emerg)\]/, "no alert in the log");
my $cache = '/var/cache/nginx/proxy_wasm';
my @cached = glob("$cache/*.cwasm");
is(scalar @cached, 2, "the compiled code is cached where Debian keeps caches");
is((stat $cache)[2] & 07777, 0700, "in a directory only its owner reads");

# removed: disabled, the stock configuration tests fine; purged: gone
my (undef, $files) = run_command("dpkg -L $package $package-dbgsym $stream_package");
my @files = grep { -f $_ } split /\n/, $files;
($rc, $out) = run_command("dpkg -r $stream_package");
is($rc, 0, "dpkg removes the stream package") or diag($out);
ok(!-e $stream_so, "the stream module is gone");
ok(!-e $stream_enabled, "the stream module is no longer enabled");
($rc, $out) = run_command("dpkg -r $package-dbgsym $package");
is($rc, 0, "dpkg removes it") or diag($out);
ok(!-e $so, "the module is gone");
ok(!-e $enabled, "the module is no longer enabled");
($rc, $out) = run_command('/usr/sbin/nginx -t');
is($rc, 0, "nginx -t passes after the removal") or diag($out);
($rc, $out) = run_command("dpkg --purge $stream_package $package-dbgsym $package");
is($rc, 0, "dpkg purges it") or diag($out);
ok(!-e "$enabled.removed" && !-l "$enabled.removed", "no link is left");
ok(!-e $cache, "the cache is gone");
is_deeply([grep { -e $_ } @files], [], "none of its files is left");
ok(!installed($package), "the package is not installed");

done_testing();
