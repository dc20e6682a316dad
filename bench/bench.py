#!/usr/bin/env python3
"""The benchmark suite: nginx (one worker, access log off, pinned to one
core) on 127.0.0.1, driven by wrk (pinned to the other core). Every
scenario is measured against a baseline in the same run, and reported as a
ratio, with latency percentiles and the worker's RSS.

    bench/bench.py [--quick] [scenario ...]

Scenarios: headers raw chain lua body isolation startup memory instructions
callout shared containment tcp lua_api (all by default). Run it with `make bench`, which builds what it needs.
"""

import argparse
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(TOP, "build")
FILTERS = os.path.join(BUILD, "filters")
WORK = os.path.join(BUILD, "bench")
NGINX = os.path.join(BUILD, "nginx-1.28.3", "objs", "nginx")
MODULE = os.path.join(BUILD, "nginx-1.28.3", "objs", "ngx_proxy_wasm_module.so")
STREAM_MODULE = os.path.join(BUILD, "nginx-1.28.3", "objs", "ngx_stream_proxy_wasm_module.so")
DEBIAN_NGINX = "/usr/sbin/nginx"
DEBIAN_MODULE = os.path.join(BUILD, "nginx-debian", "objs", "ngx_proxy_wasm_module.so")
DEBIAN_LUA = ["/usr/lib/nginx/modules/ndk_http_module.so", "/usr/lib/nginx/modules/ngx_http_lua_module.so"]
RAW_FILTER = os.path.join(TOP, "t", "wat", "bench_raw.wat")
PORT = 18765
# stream{} servers of the tcp scenario: without a filter, with one
STREAM_PORT = 18766
STREAM_FILTER_PORT = 18767

# how long each measurement runs, and how many times it alternates with its
# baseline (the median is kept)
DURATION = 3
ROUNDS = 5
# requests served to see whether the worker's memory grows
LEAK_REQUESTS = 1_000_000


def log(*args):
    print(*args, file=sys.stderr, flush=True)


class Nginx:
    """An nginx with one worker on CPU 0, in its own prefix."""

    def __init__(self, name, http, main="", binary=NGINX, modules=(MODULE,), workers=1):
        self.prefix = os.path.join(WORK, name)
        shutil.rmtree(self.prefix, ignore_errors=True)
        for sub in ("conf", "logs", "html"):
            os.makedirs(os.path.join(self.prefix, sub))
        self.binary = binary
        self.modules = modules
        self.main = main
        self.workers = workers
        self.write(http)
        self.process = None

    def write(self, http):
        loads = "".join(f"load_module {m};\n" for m in self.modules)
        conf = f"""{loads}
daemon off;
master_process on;
worker_processes {self.workers};
worker_cpu_affinity {' '.join(['01'] * self.workers)};
error_log logs/error.log warn;
pid logs/nginx.pid;
{self.main}
events {{ worker_connections 1024; }}
http {{
    access_log off;
    default_type text/plain;
    server {{
        listen 127.0.0.1:{PORT};
        root {self.prefix}/html;
{http}
    }}
}}
"""
        with open(os.path.join(self.prefix, "conf", "nginx.conf"), "w") as f:
            f.write(conf)

    def file(self, name, size):
        with open(os.path.join(self.prefix, "html", name), "wb") as f:
            f.write((b"abcdefghijklmnopqrstuvwxyz012345" * (size // 32 + 1))[:size])

    def start(self):
        started = time.perf_counter()
        self.process = subprocess.Popen([self.binary, "-p", self.prefix + "/", "-c", "conf/nginx.conf"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        while not port_open():
            if self.process.poll() is not None:
                raise SystemExit(f"nginx did not start: {self.process.stderr.read().decode()}")
            time.sleep(0.002)
        return time.perf_counter() - started

    def worker_pids(self):
        master = self.process.pid
        out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def rss_kib(self):
        total = 0
        for pid in self.worker_pids():
            with open(f"/proc/{pid}/status") as f:
                total += int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
        return total

    def reload(self):
        self.process.send_signal(signal.SIGHUP)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *_):
        self.stop()


def port_open():
    try:
        with socket.create_connection(("127.0.0.1", PORT), timeout=0.1):
            return True
    except OSError:
        return False


def get(path, headers=()):
    with socket.create_connection(("127.0.0.1", PORT), timeout=5) as s:
        extra = "".join(f"{h}\r\n" for h in headers)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data.decode("latin-1")
            data += chunk


def wrk(path, duration=None, connections=32):
    """Requests/s, bytes/s and latency percentiles (ms) of a wrk run. A
    path may start with ":<port>" (another server than the http{} one)
    and end with " close" (a new connection for every request)."""
    duration = duration or DURATION
    port = PORT
    headers = ["-H", "x-request-id: 42"]
    if path.endswith(" close"):
        path = path[:-len(" close")]
        headers += ["-H", "Connection: close"]
    if path.startswith(":"):
        port, path = path[1:].split("/", 1)
        path = "/" + path
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency",
                          *headers, f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    scale = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}[transfer.group(2)]
    latency = {}
    for pct in ("50", "90", "99"):
        m = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out)
        latency[pct] = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    total = int(re.search(r"(\d+) requests in", out).group(1))
    if errors:
        raise SystemExit(f"{path}: {errors.group(1)} failed responses\n{out}")
    return {"rps": rps, "bytes": float(transfer.group(1)) * scale, "latency": latency, "requests": total}


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def compare(nginx, baseline, variant):
    """Alternates baseline and variant runs. The pair whose ratio is the
    median is kept: the machine's speed drifts between rounds, a pair run
    back to back sees the same machine."""
    pairs = []
    for _ in range(ROUNDS):
        pairs.append((wrk(baseline), wrk(variant)))
    pairs.sort(key=lambda pair: pair[1]["rps"] / pair[0]["rps"])
    return pairs[len(pairs) // 2]


ROWS = []


def row(scenario, what, base, result, unit="req/s", target=None):
    key = "rps" if unit == "req/s" else "bytes"
    ratio = result[key] / base[key]
    scale = 1 if unit == "req/s" else 1024 ** 2
    ok = "" if target is None else ("ok" if ratio >= target else f"BELOW {target:.2f}")
    add_row(scenario, what, f"{base[key] / scale:,.0f}", f"{result[key] / scale:,.0f}", unit if unit == "req/s" else "MB/s",
            f"{ratio:.2f}", "/".join(f"{result['latency'][p]:.2f}" for p in ("50", "90", "99")),
            result.get("rss", ""), ok)


def add_row(scenario, what, baseline, measured, unit="", ratio="", latency="", note="", target=""):
    ROWS.append((scenario, what, baseline, measured, unit, ratio, latency, note, target))
    log(" | ".join(str(c) for c in ROWS[-1]))


def bench_filter(mode="headers"):
    return f'proxy_wasm bench "{mode}";'


def scenario_headers():
    http = f"""
        location /baseline {{ empty_gif; }}
        location /filter {{ {bench_filter()} empty_gif; }}
"""
    with Nginx("headers", http, main=f"wasm {{ module bench {FILTERS}/bench.wasm; }}") as n:
        base, result = compare(n, "/baseline", "/filter")
        result["rss"] = n.rss_kib()
        row("1", "one filter: read a request header, add a response header", base, result, target=0.76)


def scenario_raw():
    """The same work as scenario 1's filter, by a filter written against
    the ABI in text format (t/wat/bench_raw.wat): the host's own floor."""
    http = f"""
        location /baseline {{ empty_gif; }}
        location /raw {{ proxy_wasm raw; empty_gif; }}
"""
    with Nginx("raw", http, main=f"wasm {{ module raw {RAW_FILTER}; }}") as n:
        if get("/raw", ["x-request-id: 42"]).find("x-bench: 42") < 0:
            raise SystemExit("the raw filter does not add x-bench")
        base, result = compare(n, "/baseline", "/raw")
        result["rss"] = n.rss_kib()
        row("12", "one filter without an SDK (raw ABI, .wat), same work as 1", base, result, target=0.88)


def scenario_chain():
    chain = " ".join(bench_filter() for _ in range(10))
    http = f"""
        location /baseline {{ empty_gif; }}
        location /chain {{ {chain} empty_gif; }}
"""
    with Nginx("chain", http, main=f"wasm {{ module bench {FILTERS}/bench.wasm; }}") as n:
        base, result = compare(n, "/baseline", "/chain")
        result["rss"] = n.rss_kib()
        row("2", "a chain of 10 such filters", base, result, target=0.36)


def scenario_lua():
    if not os.path.exists(DEBIAN_LUA[1]):
        log("scenario 3 skipped: no Debian nginx with its Lua module")
        return
    http = f"""
        location /baseline {{ empty_gif; }}
        location /lua {{
            header_filter_by_lua_block {{ ngx.header["x-bench"] = ngx.var.http_x_request_id or "none" }}
            empty_gif;
        }}
        location /wasm {{ {bench_filter()} empty_gif; }}
"""
    with Nginx("lua", http, main=f"wasm {{ module bench {FILTERS}/bench.wasm; }}", binary=DEBIAN_NGINX,
               modules=DEBIAN_LUA + [DEBIAN_MODULE]) as n:
        base, lua = compare(n, "/baseline", "/lua")
        row("3", "Lua handler, same logic (Debian nginx 1.22.1)", base, lua)
        lua, wasm = compare(n, "/lua", "/wasm")
        wasm["rss"] = n.rss_kib()
        row("3", "Wasm filter, vs the Lua handler", lua, wasm, target=1.0)


def scenario_body():
    http = f"""
        location / {{ }}
        location /pass/ {{ alias {WORK}/body/html/; {bench_filter("body_pass")} }}
        location /rewrite/ {{ alias {WORK}/body/html/; {bench_filter("body_rewrite")} }}
"""
    with Nginx("body", http, main=f"wasm {{ module bench {FILTERS}/bench.wasm; }}") as n:
        n.file("1k", 1024)
        n.file("1m", 1024 * 1024)
        for size in ("1k", "1m"):
            for mode in ("pass", "rewrite"):
                base, result = compare(n, f"/{size}", f"/{mode}/{size}")
                result["rss"] = n.rss_kib()
                row("4", f"response body {mode} {size.upper()}iB", base, result, unit="MB/s")


def scenario_isolation():
    http = f"""
        location /none {{ {bench_filter()} empty_gif; }}
        location /request {{ proxy_wasm_isolation request; {bench_filter()} empty_gif; }}
"""
    for pool in ("off", "1000"):
        main = f"wasm {{ module bench {FILTERS}/bench.wasm; instance_pool {pool}; }}"
        with Nginx("isolation", http, main=main) as n:
            base, result = compare(n, "/none", "/request")
            result["rss"] = n.rss_kib()
            row("5", f"isolation request vs none (instance_pool {pool})", base, result, target=0.75)


def scenario_callout():
    # the same authorization, by nginx's auth_request (a subrequest over a
    # kept upstream connection) and by a filter's HTTP call (Envoy's
    # http_auth_random): both ask a local service for one byte
    service = PORT + 1
    http = f"""
        location /native {{ auth_request /auth; empty_gif; }}
        location = /auth {{
            internal;
            proxy_pass http://httpbin/bytes/1;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
        }}
        location /wasm {{ proxy_wasm auth_random; empty_gif; }}
    }}
    upstream httpbin {{ server 127.0.0.1:{service}; keepalive 32; }}
    server {{
        listen 127.0.0.1:{service};
        location = /bytes/1 {{ return 200 "b"; }}
"""
    main = f"wasm {{ module auth_random {FILTERS}/auth_random.wasm; }}"
    with Nginx("callout", http, main=main) as n:
        base, result = compare(n, "/native", "/wasm")
        result["rss"] = n.rss_kib()
        row("9", "authorization by an HTTP call, vs auth_request", base, result)


def scenario_shared():
    # a request counter across workers: in shared memory by a filter (a
    # CAS loop on the key-value store, and a counter metric), vs Lua's
    # shared dict (one atomic incr), on Debian's nginx
    if not os.path.exists(DEBIAN_LUA[1]):
        log("scenario 10 skipped: no Debian nginx with its Lua module")
        return
    http = f"""
        location /baseline {{ empty_gif; }}
        location /lua {{
            access_by_lua_block {{ ngx.shared.counters:incr("requests", 1, 0) }}
            empty_gif;
        }}
        location /wasm {{ {bench_filter("shared")} empty_gif; }}
    }}
    lua_shared_dict counters 1m;
    server {{
        listen 127.0.0.1:{PORT + 1};
"""
    main = f"wasm {{ module bench {FILTERS}/bench.wasm; shm_kv * 1m; }}"
    with Nginx("shared", http, main=main, binary=DEBIAN_NGINX, modules=DEBIAN_LUA + [DEBIAN_MODULE]) as n:
        base, wasm = compare(n, "/baseline", "/wasm")
        wasm["rss"] = n.rss_kib()
        row("10", "count requests in shared memory (shm_kv CAS + a metric), vs none", base, wasm)
        lua, wasm = compare(n, "/lua", "/wasm")
        row("10", "the same, vs Lua's lua_shared_dict incr (Debian nginx 1.22.1)", lua, wasm)


def scenario_containment():
    # bystanders of a module that traps 5 times a second on another
    # location: the same wrk run with and without the storm
    http = """
        location /bystander {
            proxy_wasm testbed "response_headers add_header response x-bench yes";
            empty_gif;
        }
        location /panic { proxy_wasm testbed "request_headers panic"; empty_gif; }
"""
    main = f"wasm {{ module testbed {FILTERS}/testbed.wasm; }}"
    with Nginx("containment", http, main=main) as n:
        pairs = []
        traps = []
        for _ in range(ROUNDS):
            calm = wrk("/bystander")
            stop = threading.Event()

            def storm():
                while not stop.wait(0.2):
                    traps.append(get("/panic").split(" ", 2)[1])

            thread = threading.Thread(target=storm)
            thread.start()
            # wrk fails the scenario if a single bystander request fails
            stormy = wrk("/bystander")
            stop.set()
            thread.join()
            pairs.append((calm, stormy))
        pairs.sort(key=lambda pair: pair[1]["rps"] / pair[0]["rps"])
        base, result = pairs[len(pairs) // 2]
        if any(status != "500" for status in traps):
            raise SystemExit(f"a trap was not a 500: {traps}")
        result["rss"] = f"{len(traps)} traps"
        row("11", "bystanders under a trap storm (5/s, same module), vs none", base, result, target=0.80)


def distinct_modules(count):
    """Copies of the bench filter that differ by a custom section, so
    that each is compiled (and cached) on its own."""
    with open(os.path.join(FILTERS, "bench.wasm"), "rb") as f:
        code = f.read()
    paths = []
    os.makedirs(os.path.join(WORK, "modules"), exist_ok=True)
    for i in range(count):
        name = f"bench-{i}".encode()
        payload = bytes([len(name)]) + name
        section = b"\x00" + bytes([len(payload)]) + payload
        path = os.path.join(WORK, "modules", f"bench{i}.wasm")
        with open(path, "wb") as f:
            f.write(code + section)
        paths.append(path)
    return paths


def with_modules(count):
    """The wasm{} block's modules and a location for each, for `count`
    distinct modules."""
    modules = distinct_modules(count)
    wasm = "".join(f"module m{i} {p};" for i, p in enumerate(modules))
    locations = "".join(f'location /m{i} {{ proxy_wasm m{i}; empty_gif; }}\n' for i in range(count))
    return wasm, locations


def different_modules():
    """The wasm{} block's modules for the test filters, each different code
    (Rust SDK filters and an AssemblyScript one): what they share is only
    what their toolchains put in every module. No location uses them (some
    need a configuration), so they are compiled and loaded, not started."""
    paths = sorted(glob.glob(os.path.join(FILTERS, "*.wasm")))
    wasm = "".join(f"module f{i} {p};" for i, p in enumerate(paths))
    return wasm, "", len(paths)


def scenario_startup():
    for count in (1, 20, "different"):
        for cache in (False, True):
            cache_dir = os.path.join(WORK, "cache")
            shutil.rmtree(cache_dir, ignore_errors=True)
            if count == "different":
                wasm, locations, different = different_modules()
            else:
                wasm, locations = with_modules(count)
            wasm += f" cache {cache_dir};" if cache else " cache off;"
            n = Nginx("startup", locations + "location /gen { return 200 '1'; }", main=f"wasm {{ {wasm} }}")
            if cache:
                # a first start fills the cache
                n.start()
                n.stop()
            start = n.start()
            # the port opens before the master waits for signals: a SIGHUP
            # sent before a worker answers may not be acted on until the
            # next signal
            while not get("/gen").endswith("1"):
                time.sleep(0.002)
            # reload: from SIGHUP until a new worker answers with the new config
            n.write(locations + "location /gen { return 200 '2'; }")
            began = time.perf_counter()
            n.reload()
            while not get("/gen").endswith("2"):
                time.sleep(0.002)
            reload = time.perf_counter() - began
            n.stop()
            modules = f"{different} different modules" if count == "different" else \
                f"{count} module{'s' if count > 1 else ''}"
            label = f"{modules}, cache {'warm' if cache else 'off'}"
            # 20 modules start within 1.5 s without the cache, 100 ms with it
            limit = 0.1 if cache else 1.5
            add_row("6", f"start-up / reload, {label}", f"{start * 1000:.0f} ms", f"{reload * 1000:.0f} ms",
                    target="ok" if count == 20 and start < limit else
                    f"ABOVE {limit * 1000:.0f} ms" if count == 20 else "")


def scenario_memory():
    """Worker RSS: nginx alone, with 1 and with 20 modules (each with its
    instance); the cost of one more module is the slope between the two,
    the rest is the fixed cost of the runtime. Then LEAK_REQUESTS: RSS must
    not grow after warm-up (256 KiB of allocator noise allowed)."""
    plain = Nginx("memory", "location / { empty_gif; }", modules=())
    with plain:
        get("/")
        plain_rss = plain.rss_kib()
    rss = {}
    growth = ""
    for count in (1, 20):
        wasm, locations = with_modules(count)
        with Nginx("memory", locations, main=f"wasm {{ {wasm} }}") as n:
            for i in range(count):
                get(f"/m{i}")
            rss[count] = n.rss_kib()
            if count == 1:
                wrk("/m0", duration=3)
                warm = n.rss_kib()
                done = 0
                while done < LEAK_REQUESTS:
                    done += wrk("/m0")["requests"]
                growth = n.rss_kib() - warm
    per_module = (rss[20] - rss[1]) / 19
    fixed = rss[1] - plain_rss - per_module
    add_row("7", "worker RSS: nginx alone / runtime (fixed)", f"{plain_rss:,} KiB", f"+{fixed:,.0f} KiB")
    add_row("7", "worker RSS per module, with its instance", f"{rss[1]:,} KiB (1)", f"{rss[20]:,} KiB (20)",
            note=f"{per_module:,.0f} KiB per module", target="ok" if per_module <= 10 * 1024 else "BELOW 10 MB")
    add_row("7", "worker RSS growth after warm-up", "", f"{growth:+,} KiB", note=f"{done:,} requests",
            target="ok" if growth <= 256 else "GROWS")


def scenario_instructions():
    """Instructions per request (valgrind's callgrind, nginx in a single
    process): what throughput cannot show steadily on a noisy machine. Each
    run starts nginx, serves N requests and stops; a run without requests
    is subtracted."""
    if shutil.which("valgrind") is None:
        log("instructions skipped: no valgrind")
        return
    requests = 500
    chain = " ".join(bench_filter() for _ in range(10))
    http = f"""
        location /baseline {{ empty_gif; }}
        location /filter {{ {bench_filter()} empty_gif; }}
        location /chain {{ {chain} empty_gif; }}
        location /raw {{ proxy_wasm raw; empty_gif; }}
        location /request {{ proxy_wasm_isolation request; {bench_filter()} empty_gif; }}
"""
    cache = os.path.join(WORK, "instructions-cache")
    n = Nginx("instructions", http,
              main=f"wasm {{ module bench {FILTERS}/bench.wasm; module raw {RAW_FILTER}; cache {cache}; }}")
    conf = os.path.join(n.prefix, "conf", "nginx.conf")
    with open(conf) as f:
        text = f.read().replace("master_process on;", "master_process off;")
    with open(conf, "w") as f:
        f.write(text)
    # fill the cache before counting: valgrind's emulated CPU has other
    # features than the real one, so its code is cached apart, and the
    # cheapest tool compiles it
    subprocess.run(["valgrind", "--tool=none", NGINX, "-p", n.prefix + "/", "-c", "conf/nginx.conf", "-t"],
                   check=True, capture_output=True)

    def run(path, count):
        # kept for callgrind_annotate
        out = os.path.join(n.prefix, "logs", f"callgrind.{path.strip('/')}.{count}")
        process = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                                    NGINX, "-p", n.prefix + "/", "-c", "conf/nginx.conf"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not port_open():
            time.sleep(0.1)
        for _ in range(count):
            get(path, ["x-request-id: 42"])
        process.send_signal(signal.SIGQUIT)
        # under valgrind a signal does not interrupt epoll_wait: a
        # connection wakes the loop, which then sees the signal
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:
            port_open()
            time.sleep(0.2)
        if process.poll() is None:
            process.kill()
            raise SystemExit("nginx under valgrind did not stop")
        with open(out) as f:
            return int(re.search(r"^summary: (\d+)", f.read(), re.M).group(1))

    idle = run("/baseline", 1)
    per = {path: (run(path, requests + 1) - idle) / requests for path in ("/baseline", "/filter", "/chain", "/raw", "/request")}
    if not 0 < per["/baseline"] < per["/filter"] < per["/chain"]:
        raise SystemExit(f"instruction counts make no sense (something compiled while counted?): {per}")
    for path, what in (("/filter", "one filter"), ("/chain", "a chain of 10"), ("/raw", "one raw-ABI filter"),
                       ("/request", "one filter, isolation request (no pool)")):
        add_row("8", f"instructions per request, {what}", f"{per['/baseline']:,.0f}", f"{per[path]:,.0f}",
                "instr", f"{per['/baseline'] / per[path]:.2f}", note=f"+{per[path] - per['/baseline']:,.0f}")


def scenario_lua_api():
    """The same filter as scenario 1, attached from Lua (resty.proxy_wasm)
    vs configured by directive, on Debian's nginx with its Lua module:
    both locations run the same (empty) rewrite_by_lua handler, so the
    difference is attach() and the chain Lua names."""
    if not os.path.exists(DEBIAN_LUA[1]):
        log("scenario 14 skipped: no Debian nginx with its Lua module")
        return
    http = f"""
        location /baseline {{ rewrite_by_lua_block {{ }} empty_gif; }}
        location /directive {{ rewrite_by_lua_block {{ }} {bench_filter()} empty_gif; }}
        location /attached {{ rewrite_by_lua_block {{ PW.attach(CHAIN) }} empty_gif; }}
    }}
    lua_package_path "{TOP}/lib/?.lua;;";
    init_worker_by_lua_block {{
        PW = require "resty.proxy_wasm"
        CHAIN = PW.new({{ {{ name = "bench", config = "headers" }} }})
    }}
    server {{
        listen 127.0.0.1:{PORT + 1};
"""
    main = f"wasm {{ module bench {FILTERS}/bench.wasm; }}"
    with Nginx("lua_api", http, main=main, binary=DEBIAN_NGINX, modules=DEBIAN_LUA + [DEBIAN_MODULE]) as n:
        if get("/attached", ["x-request-id: 42"]).find("x-bench: 42") < 0:
            raise SystemExit("the attached chain does not add x-bench")
        base, directive = compare(n, "/baseline", "/directive")
        row("14", "one filter by directive, vs none (both with rewrite_by_lua, Debian nginx 1.22.1)", base,
            directive)
        directive, attached = compare(n, "/directive", "/attached")
        attached["rss"] = n.rss_kib()
        row("14", "the same filter attached from Lua, vs by directive", directive, attached, target=0.95)


def scenario_tcp():
    """TCP through stream{}: nginx's proxy alone, and with one network
    filter (counting bytes each way in metrics), in front of the http{}
    server: 1 MiB responses over kept connections (transfer), and a new
    connection for each small response (connection rate)."""
    main = f"""wasm {{ module network {FILTERS}/network.wasm; }}
stream {{
    server {{ listen 127.0.0.1:{STREAM_PORT}; proxy_pass 127.0.0.1:{PORT}; }}
    server {{ listen 127.0.0.1:{STREAM_FILTER_PORT}; proxy_wasm network bytes; proxy_pass 127.0.0.1:{PORT}; }}
}}"""
    http = """
        location / { }
        location /small { empty_gif; }
"""
    with Nginx("tcp", http, main=main, modules=(MODULE, STREAM_MODULE)) as n:
        n.file("1m", 1024 * 1024)
        base, result = compare(n, f":{STREAM_PORT}/1m", f":{STREAM_FILTER_PORT}/1m")
        result["rss"] = n.rss_kib()
        row("13", "TCP transfer, 1 MiB responses, one network filter vs none", base, result, unit="MB/s")
        base, result = compare(n, f":{STREAM_PORT}/small close", f":{STREAM_FILTER_PORT}/small close")
        result["rss"] = n.rss_kib()
        row("13", "TCP connections/s (new connection per request), one network filter vs none", base, result)


SCENARIOS = {
    "headers": scenario_headers,
    "raw": scenario_raw,
    "chain": scenario_chain,
    "lua": scenario_lua,
    "body": scenario_body,
    "isolation": scenario_isolation,
    "startup": scenario_startup,
    "memory": scenario_memory,
    "instructions": scenario_instructions,
    "callout": scenario_callout,
    "shared": scenario_shared,
    "containment": scenario_containment,
    "tcp": scenario_tcp,
    "lua_api": scenario_lua_api,
}


def main():
    global DURATION, ROUNDS, LEAK_REQUESTS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 s runs, 1 round (a smoke test, not a measurement)")
    parser.add_argument("scenarios", nargs="*", choices=[[]] + list(SCENARIOS), default=[])
    args = parser.parse_args()
    if args.quick:
        DURATION, ROUNDS, LEAK_REQUESTS = 1, 1, 50_000
    os.makedirs(WORK, exist_ok=True)
    for name in args.scenarios or SCENARIOS:
        SCENARIOS[name]()
    header = ("#", "scenario", "baseline", "measured", "unit", "ratio", "p50/p90/p99 ms", "RSS KiB / note", "target")
    widths = [max(len(str(r[i])) for r in [header] + ROWS) for i in range(len(header))]
    for r in [header, tuple("-" * w for w in widths)] + ROWS:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |")


if __name__ == "__main__":
    main()
