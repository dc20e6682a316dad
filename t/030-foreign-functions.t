# Foreign functions (proxy_call_foreign_function): Envoy's compress and
# uncompress (zlib), from a tick as the Go SDK's foreign_call_on_tick
# example calls them and from requests; declare_property; verify_signature
# with a key openssl made; unknown names are NOT_FOUND.
use Test::Nginx::Socket 'no_plan';
use ProxyWasmTest;

default_modules(testbed => '$TEST_NGINX_FILTERS/testbed.wasm');

# An RSA key made for the run: its public key in DER (hex) and PEM
# (percent-encoded for the script), and its SHA-256 signature of "hello".
{
    my $dir = test_certificates();
    my $run = sub { system("$_[0] >/dev/null 2>&1") == 0 or die "$_[0] failed" };
    $run->("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out $dir/rsa.key");
    $run->("openssl pkey -in $dir/rsa.key -pubout -outform DER -out $dir/rsa.der");
    $run->("openssl pkey -in $dir/rsa.key -pubout -out $dir/rsa.pem");
    open my $t, '>', "$dir/hello" or die; print $t 'hello'; close $t;
    $run->("openssl dgst -sha256 -sign $dir/rsa.key -out $dir/hello.sig $dir/hello");
    my $read = sub { local (@ARGV, $/) = @_; scalar <> };
    $ENV{TEST_NGINX_RSA_DER} = unpack 'H*', $read->("$dir/rsa.der");
    $ENV{TEST_NGINX_RSA_SIG} = unpack 'H*', $read->("$dir/hello.sig");
    ($ENV{TEST_NGINX_RSA_PEM} = $read->("$dir/rsa.pem")) =~ s/([^A-Za-z0-9])/sprintf '%%%02X', ord $1/ge;
}

run_tests();

__DATA__

=== TEST 1: compress from on_tick, as the Go SDK's foreign_call_on_tick: zlib's format, every tick
--- config
    location / {
        proxy_wasm testbed "configure tick_period 100; tick foreign compress hello%20world!";
        empty_gif;
    }
--- request
GET /
--- wait: 0.5
--- grep_error_log eval
qr/foreign compress: \d+ bytes, starting \w+/
--- grep_error_log_out eval
qr/\A(foreign compress: 20 bytes, starting 789ccb48\n){3,}\z/
--- no_error_log
[warn]



=== TEST 2: what compress made, uncompress gives back, from a request
--- config
    location / {
        proxy_wasm testbed "request_headers foreign_roundtrip the%20same%20text,%20the%20same%20text,%20the%20same%20text";
        empty_gif;
    }
--- request
GET /
--- error_code: 200
--- error_log
roundtrip 43 bytes -> 26 -> "the same text, the same text, the same text"
--- no_error_log
[warn]



=== TEST 3: uncompress of what is not zlib's is SERIALIZATION_FAILURE, with the reason logged; the request goes on
--- config
    location / {
        proxy_wasm testbed "request_headers foreign uncompress not-zlib";
        empty_gif;
    }
--- request
GET /
--- error_code: 200
--- error_log eval
[qr/\[warn\] .*foreign function uncompress: not zlib data/,
 qr/foreign uncompress failed: SerializationFailure/]



=== TEST 4: an unknown function is NOT_FOUND, logged once with the functions there are
--- config
    location / {
        proxy_wasm testbed "request_headers foreign declare_nothing x";
        empty_gif;
    }
--- request eval
["GET /", "GET /"]
--- error_code eval
[200, 200]
--- grep_error_log eval
qr/foreign function "declare_nothing" is not provided by this host \(it has: compress, uncompress, declare_property, verify_signature\): returning NOT_FOUND|foreign declare_nothing failed: NotFound/
--- grep_error_log_out
foreign function "declare_nothing" is not provided by this host (it has: compress, uncompress, declare_property, verify_signature): returning NOT_FOUND
foreign declare_nothing failed: NotFound
foreign declare_nothing failed: NotFound



=== TEST 7: declare_property: a read-only property is set once, read back by filters and $proxy_wasm_property_*; declaring it twice is BAD_ARGUMENT
--- config
    location / {
        proxy_wasm testbed "configure declare tenant 1 1; configure declare tenant 0; request_headers set_prop tenant acme; request_headers set_prop tenant other; request_headers prop tenant; request_headers set_prop free one; request_headers set_prop free two; request_headers prop free";
        add_header X-Tenant $proxy_wasm_property_tenant;
        empty_gif;
    }
--- request
GET /
--- error_code: 200
--- response_headers
X-Tenant: acme
--- error_log eval
[qr/declared tenant/,
 qr/foreign function declare_property: property "tenant" is declared already/,
 qr/declare tenant failed: BadArgument/,
 qr/set_property tenant returned 0/,
 qr/\[error\].*cannot set tenant: the property is read-only/,
 qr/set_property tenant returned 2/,
 qr/property tenant: len=4 .*text="acme"/,
 qr/property free: len=3 .*text="two"/]



=== TEST 8: declare_property with arguments that are not DeclarePropertyArguments, or an unknown type: BAD_ARGUMENT, logged
--- config
    location / {
        proxy_wasm testbed "request_headers foreign declare_property garbage; request_headers declare odd 0 9";
        empty_gif;
    }
--- request
GET /
--- error_code: 200
--- error_log eval
[qr/foreign function declare_property: the arguments are not a DeclarePropertyArguments/,
 qr/foreign declare_property failed: BadArgument/,
 qr/foreign function declare_property: an unknown property type/,
 qr/declare odd failed: BadArgument/]



=== TEST 9: verify_signature: a signature openssl made checks out with the public key in DER and in PEM; another text, a key that is none: as Envoy answers
--- config
    location / {
        proxy_wasm testbed "request_headers verify sha256 $TEST_NGINX_RSA_DER $TEST_NGINX_RSA_SIG hello";
        proxy_wasm testbed "request_headers verify sha256 pem:$TEST_NGINX_RSA_PEM $TEST_NGINX_RSA_SIG hello";
        proxy_wasm testbed "request_headers verify sha256 $TEST_NGINX_RSA_DER $TEST_NGINX_RSA_SIG hellO";
        proxy_wasm testbed "request_headers verify sha512 $TEST_NGINX_RSA_DER $TEST_NGINX_RSA_SIG hello";
        proxy_wasm testbed "request_headers verify sha256 00ff $TEST_NGINX_RSA_SIG hello";
        empty_gif;
    }
--- request
GET /
--- error_code: 200
--- grep_error_log eval
qr/verify_signature sha\d+[^,]*/
--- grep_error_log_out eval
qr/\Averify_signature sha256: true ""
verify_signature sha256: true ""
verify_signature sha256: false "signature verification failed[^"]*"
verify_signature sha512: false "signature verification failed[^"]*"
verify_signature sha256 failed: BadArgument
\z/
