# What a packager meets building the module: ./configure stops with one
# line that says what to install or set when the build cannot work, and
# what the library is linked into (the dynamic module, or nginx) is
# stripped, with its debug information beside it.
#
# "make test-build" runs it (TEST_NGINX_BUILD_CHECKS=1), against the
# release builds of util/test-env.sh 1.28.3 (TEST_NGINX_STATIC_BINARY: the
# static one's nginx); prove -r t/ skips it.

use strict;
use warnings;

use File::Temp qw(tempdir);
use Test::More;

use lib 't/lib';
use ProxyWasmTest qw(run_command elf_facts);

plan skip_all => 'make test-build runs it (TEST_NGINX_BUILD_CHECKS unset)'
    unless $ENV{TEST_NGINX_BUILD_CHECKS};

my $top = `pwd`;
chomp $top;

# the release builds' module and static nginx: stripped, their debug
# information beside them
my ($so) = grep { /ngx_proxy_wasm_module\.so$/ }
           split ' ', $ENV{TEST_NGINX_LOAD_MODULES} // '';
ok($so && -f $so, "the release build has a dynamic module")
    or BAIL_OUT('no module in TEST_NGINX_LOAD_MODULES');
my $static = $ENV{TEST_NGINX_STATIC_BINARY};
ok($static && -x $static, "the release build has a static nginx")
    or BAIL_OUT('no TEST_NGINX_STATIC_BINARY');

for my $file ($so, $static) {
    my $name = (split m{/}, $file)[-1];
    my ($elf, $debug) = (elf_facts($file), elf_facts("$file.debug"));
    ok($elf->{stripped}, "$name is stripped");
    is($elf->{debuglink}, "$name.debug",
       "$name links to its debug information, the file beside it");
    ok($debug->{line_tables}, "which has the line tables");
    ok($elf->{build_id}, "$name has a build id");
    is($debug->{build_id}, $elf->{build_id}, "the debug information's");
    my $size = -s $file;
    cmp_ok($size, '<', 40 << 20, "$name is $size bytes");
}

# ./configure's checks, on a copy of Debian's nginx source
my $src = '/usr/share/nginx/src';
my $tmp = tempdir(CLEANUP => 1);
run_command("cp -R $src/. $tmp/nginx && chmod -R u+w $tmp/nginx");
my $configure = -x "$tmp/nginx/configure" ? './configure' : './auto/configure';

# stand-ins for cargo: one too old, one whose toolchain is missing
sub script {
    my ($name, $body) = @_;
    open my $f, '>', "$tmp/$name" or die $!;
    print $f "#!/bin/sh\n$body\n";
    close $f;
    chmod 0755, "$tmp/$name";
    return "$tmp/$name";
}
my $fake_cargo = script('old-cargo', "echo 'cargo 1.80.0 (376290515 2024-07-16)'");
my $broken_cargo = script('broken-cargo',
    "echo \"error: toolchain '1.97.0' is not installed\" >&2; exit 1");

my $cargo = $ENV{NGX_PROXY_WASM_CARGO} // "$ENV{HOME}/.cargo/bin/cargo";

sub configure {
    my ($env) = @_;
    $env = "NGX_PROXY_WASM_CARGO=$cargo $env";
    return run_command("cd $tmp/nginx && env $env $configure --with-compat "
               . "--add-dynamic-module=$top");
}

sub fails_with {
    my ($what, $env, $expected) = @_;
    my ($rc, $out) = configure($env);
    isnt($rc, 0, "$what: ./configure fails");
    my @errors = grep { /: error: / } split /\n/, $out;
    is(scalar @errors, 1, "$what: with one line") or diag(join "\n", @errors);
    like($errors[0] // '', $expected, "$what: that says what to do");
}

fails_with('no cargo', 'NGX_PROXY_WASM_CARGO=/nonexistent/cargo',
    qr{^\S*configure: error: ngx_proxy_wasm: cargo not found \("/nonexistent/cargo"\): install Rust with rustup, or set NGX_PROXY_WASM_CARGO to cargo's path$});

fails_with('an old Rust', "NGX_PROXY_WASM_CARGO=$fake_cargo",
    qr{^\S*configure: error: ngx_proxy_wasm: Rust [\d.]+ or newer is needed, \Q$fake_cargo\E is 1\.80\.0: run "rustup update", or set NGX_PROXY_WASM_CARGO to a newer cargo$});

fails_with('a cargo that fails', "NGX_PROXY_WASM_CARGO=$broken_cargo",
    qr{^\S*configure: error: ngx_proxy_wasm: "\Q$broken_cargo\E --version" failed \(error: toolchain '1\.97\.0' is not installed\): install the Rust release rust-toolchain\.toml names \("rustup toolchain install" in the module's directory\), or set NGX_PROXY_WASM_CARGO to another cargo$});

fails_with('no libclang', 'LIBCLANG_PATH=/nonexistent',
    qr{^\S*configure: error: ngx_proxy_wasm: no libclang\.so in LIBCLANG_PATH \(/nonexistent\): point it at the directory that has it$});

fails_with('an unknown compiler', 'NGX_PROXY_WASM_COMPILERS="cranelift fast"',
    qr{^\S*configure: error: ngx_proxy_wasm: unknown compiler "fast" in NGX_PROXY_WASM_COMPILERS \("cranelift fast"\): use "cranelift", "winch" or both$});

# an nginx without a stream module (Debian's flags, no --with-stream):
# the HTTP module builds, loads into Debian's nginx (whose stream module is
# not loaded) and serves a filter; no stream module is made
{
    my $env = "NGX_PROXY_WASM_CARGO=$cargo NGX_PROXY_WASM_CARGO_TARGET_DIR=$top/build/cargo";
    # conf_flags is a bash array
    my $flags = "$tmp/debian-configure";
    open my $sh, '>', $flags or die $!;
    print $sh "cd $tmp/nginx && . ./conf_flags && exec env $env $configure "
              . '"${NGX_CONF_FLAGS[@]}" --with-cc-opt=-fPIC --with-ld-opt=-fPIC '
              . "--add-dynamic-module=$top\n";
    close $sh;
    my ($rc, $out) = run_command("bash $flags");
    is($rc, 0, "without a stream module: ./configure") or diag($out);
    ($rc, $out) = run_command("make -C $tmp/nginx -f objs/Makefile -j2 modules");
    is($rc, 0, "without a stream module: make modules") or diag($out);
    ok(-f "$tmp/nginx/objs/ngx_proxy_wasm_module.so", "the HTTP module is built");
    ok(!-e "$tmp/nginx/objs/ngx_stream_proxy_wasm_module.so", "no stream module is");
    my (undef, $undefined) = run_command("nm -D --undefined-only $tmp/nginx/objs/ngx_proxy_wasm_module.so");
    unlike($undefined, qr/ngx_stream_/, "the HTTP module needs nothing of nginx's stream module");

    my $prefix = "$tmp/run";
    mkdir $prefix;
    mkdir "$prefix/logs";
    open my $conf, '>', "$prefix/nginx.conf" or die $!;
    print $conf <<"END";
load_module $tmp/nginx/objs/ngx_proxy_wasm_module.so;
error_log $prefix/logs/error.log;
pid $prefix/logs/nginx.pid;
events {}
wasm { module hello $top/build/filters/hello.wasm; }
http { server { listen 127.0.0.1:1; proxy_wasm hello; } }
END
    close $conf;
    ($rc, $out) = run_command("/usr/sbin/nginx -p $prefix/ -c $prefix/nginx.conf -t");
    is($rc, 0, "Debian's nginx, without its stream module, loads it and checks a filter")
        or diag($out);
    run_command("rm -rf $tmp/nginx/objs $tmp/nginx/Makefile");
}

# an nginx newer than the last line supported, and one older than the
# oldest supported
sub nginx_version {
    run_command(qq{sed -i 's/^#define NGINX_VERSION .*/#define NGINX_VERSION      "$_[0]"/' }
                . "$tmp/nginx/src/core/nginx.h");
}
for my $version ('1.29.0', '1.20.2') {
    nginx_version($version);
    fails_with("nginx $version", '',
        qr{^\S*configure: error: ngx_proxy_wasm: nginx \Q$version\E is not supported \(supported: 1\.22\.1 to 1\.28\.x\); set NGX_PROXY_WASM_NGINX_CHECK=off to build anyway$});
}

my ($rc, $out) = configure('NGX_PROXY_WASM_NGINX_CHECK=off');
is($rc, 0, "NGX_PROXY_WASM_NGINX_CHECK=off builds for it anyway")
    or diag($out);
like($out, qr/^ \+ ngx_proxy_wasm: nginx 1\.20\.2, Rust [\d.]+, compilers: cranelift$/m,
     "and ./configure says what the build will have");

done_testing();
