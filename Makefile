# The two commands of the README:
#   make run    build nginx 1.28.3 with the module and the example filter,
#               and start it on 127.0.0.1 (make stop stops it)
#   make test   the whole test suite: cargo tests (with brief fuzzing), then
#               the .t files against nginx 1.28.3 built as nginx.org's
#               packages are (dynamic and static module) and Debian's nginx
#               1.22.1 with its Lua module, the build's own checks, the
#               Debian package installed and removed, a short soak and the
#               benchmarks once (make test-asan runs the .t files with ASan
#               and UBSan)
# Both install what they need first (util/deps.sh).

CARGO ?= $(HOME)/.cargo/bin/cargo
export NGX_PROXY_WASM_CARGO := $(CARGO)
export CARGO_TARGET_DIR := $(CURDIR)/build/cargo

.PHONY: run stop test bench bench-smoke deps lib filters nginx nginx-static nginx-debian \
        check test-rust test-nginx test-1.28.3 test-1.28.3-static test-debian \
        test-debian-wasm-first fuzz nginx-asan test-asan soak soak-smoke \
        deb test-deb test-build

run: deps nginx filters
	util/run.sh

stop:
	util/run.sh stop

test: deps check test-rust filters nginx nginx-static nginx-debian \
      test-nginx test-build test-deb soak-smoke bench-smoke

# the Debian package for Debian 12's nginx, and its -dbgsym, in build/deb/
deb: deps filters
	util/deb.sh

# installs the package, serves a request with /usr/sbin/nginx, removes it
# (as root)
test-deb: deb
	TEST_NGINX_DEB_DIR=$(CURDIR)/build/deb prove -It/lib t/028-debian-package.t

# ./configure's errors, and the stripped module and nginx of the release
# builds
test-build: nginx nginx-static
	TEST_NGINX_BUILD_CHECKS=1 \
	TEST_NGINX_STATIC_BINARY=$(CURDIR)/build/nginx-1.28.3-static/objs/nginx \
	util/test-env.sh 1.28.3 prove -It/lib t/029-build.t

# the benchmark suite (bench/bench.py): a table on stdout, about 10 minutes
bench: deps nginx nginx-debian filters
	bench/bench.py

# requests through a mix of filters on 2 workers for 5 minutes: memory,
# open files and shared zones must stay flat (bench/soak.py)
soak: deps nginx filters
	bench/soak.py --seconds 300

soak-smoke: nginx filters
	bench/soak.py --seconds 20

# the whole .t suite against nginx and the C shim built with ASan and UBSan
# (about 9 minutes; not part of make test yet)
test-asan: deps filters nginx-asan
	util/test-env.sh 1.28.3-asan

# every scenario once, briefly: the suite still runs (its numbers mean little)
bench-smoke: nginx nginx-debian filters
	bench/bench.py --quick

# every fuzz target of tests/fuzz.rs for FUZZ_SECONDS (default 60) each,
# from a new seed (NGX_PROXY_WASM_FUZZ_SEED=... replays one); make test
# runs each briefly from a fixed seed
FUZZ_SECONDS ?= 60
fuzz: deps filters
	NGX_PROXY_WASM_TEST_FILTERS=$(CURDIR)/build/filters \
	NGX_PROXY_WASM_FUZZ_SECONDS=$(FUZZ_SECONDS) \
	NGX_PROXY_WASM_FUZZ_SEED=$${NGX_PROXY_WASM_FUZZ_SEED:-$$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')} \
	$(CARGO) test --release --test fuzz -- --test-threads=1 --nocapture

deps:
	util/deps.sh

lib:
	$(CARGO) build --profile nginx --lib

filters:
	t/build-filters.sh

nginx:
	util/nginx.sh 1.28.3

nginx-static:
	util/nginx.sh 1.28.3-static

nginx-debian:
	util/nginx.sh debian

nginx-asan:
	util/nginx.sh 1.28.3-asan

check:
	$(CARGO) fmt --check
	$(CARGO) clippy --release --all-targets -- -D warnings

test-rust: filters
	NGX_PROXY_WASM_TEST_FILTERS=$(CURDIR)/build/filters $(CARGO) test --release
	NGX_PROXY_WASM_TEST_FILTERS=$(CURDIR)/build/filters $(CARGO) bench --bench hostcalls -- --check

test-nginx: test-1.28.3 test-1.28.3-static test-debian test-debian-wasm-first

test-1.28.3 test-1.28.3-static test-debian: test-%:
	util/test-env.sh $*

# the other load order of the modules: the orders of phases and filters
# must not depend on it
test-debian-wasm-first:
	util/test-env.sh debian-wasm-first prove -It/lib t/002-chain.t t/012-lua.t t/033-lua-api.t
