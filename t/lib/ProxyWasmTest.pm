package ProxyWasmTest;

# Helpers for this project's .t files, on Test::Nginx's public API only (so
# the files still run under upstream Test::Nginx).

use strict;
use warnings;

use Exporter 'import';
our @EXPORT = qw(default_modules test_certificates);

use File::Temp qw(tempdir);

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

1;
