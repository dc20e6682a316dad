#!/usr/bin/env python3
"""Soak: requests through a mix of filters on 2 workers for a long time,
to show that nothing grows: header filters, a response body rewrite, HTTP
calls, a CAS counter in shared memory, queues, metrics, ticks, and a small
share of traps and timeouts (answered 503); and beside them, TCP
connections through network filters of a stream{} server (a new
connection for every request: a byte counter and a rewriting filter in
front of the same HTTP server). Every few seconds it samples
the workers' RSS, their open file descriptors and the shared zones' free
bytes; after the warm-up (the first quarter) each must stay flat, no
worker may die, and every request must get its expected status.

    bench/soak.py [--seconds N]

`make soak` runs it for 5 minutes; `make test` for 20 seconds.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the same nginx and wrk helpers)

SERVICE = bench.PORT + 1
STREAM = bench.PORT + 2

# path, weight in 10,000, the status it must get
MIX = [
    ("/headers", 2000, 200),
    ("/isolated", 900, 200),
    ("/isolated_grow", 95, 200),
    ("/isolated_panic", 5, 503),
    ("/body/page", 1500, 200),
    ("/call", 1500, 200),
    ("/kv", 1500, 200),
    ("/queue", 1000, 200),
    ("/metric", 1488, 200),
    ("/panic", 10, 503),
    ("/spin", 2, 503),
]

LOCATIONS = f"""
        location /headers {{
            proxy_wasm testbed "request_headers add_header request x-soak 1; response_headers add_header response x-soak 2";
            empty_gif;
        }}
        # per-request instances, reset and reused (a panic drops one)
        location /isolated {{
            proxy_wasm_isolation request;
            proxy_wasm testbed "configure count; request_headers count; response_headers add_header response x-soak 3";
            empty_gif;
        }}
        location /isolated_grow {{
            proxy_wasm_isolation request;
            proxy_wasm testbed "request_headers grow 1";
            empty_gif;
        }}
        location /isolated_panic {{
            proxy_wasm_isolation request;
            proxy_wasm_failure_status 503;
            proxy_wasm testbed "configure count; request_headers panic";
            empty_gif;
        }}
        location /body/ {{
            proxy_wasm testbed "response_body upper_body";
        }}
        location /call {{
            proxy_wasm testbed "request_headers call 127.0.0.1:{SERVICE} GET /svc svc 2000; request_headers pause; call_response continue";
            empty_gif;
        }}
        location /kv {{
            proxy_wasm testbed "request_headers kv_incr counter";
            empty_gif;
        }}
        location /queue {{
            proxy_wasm testbed "request_headers enqueue testbed q item";
            empty_gif;
        }}
        location /metric {{
            proxy_wasm testbed "request_headers metric 0 hits; request_headers metric_incr hits 1";
            empty_gif;
        }}
        # the failures are another module's: requests paused in the
        # testbed's shared instance would end with it (see Failures)
        location /panic {{
            proxy_wasm_failure_status 503;
            proxy_wasm trapper "request_headers panic";
            empty_gif;
        }}
        location /spin {{
            proxy_wasm_failure_status 503;
            proxy_wasm trapper "request_headers spin";
            empty_gif;
        }}
        location /drain {{
            # its root context drains the queue and ticks
            proxy_wasm testbed "configure queue_register q; configure tick_period 100; queue_ready drain; tick kv_incr ticks";
            return 204;
        }}
        location = /metrics {{
            proxy_wasm_metrics;
        }}
    }}
    server {{
        listen 127.0.0.1:{SERVICE};
        location /svc {{ return 200 "ok"; }}
"""

MAIN = f"""wasm {{
    module testbed {bench.FILTERS}/testbed.wasm;
    module trapper {bench.FILTERS}/testbed.wasm;
    module network {bench.FILTERS}/network.wasm;
    callback_timeout 20ms;
    shm_kv * 1m;
    shm_queue q 4m;
}}
stream {{
    server {{
        listen 127.0.0.1:{STREAM};
        proxy_wasm network bytes;
        proxy_wasm network "rewrite /tcp /headers";
        proxy_pass 127.0.0.1:{bench.PORT};
    }}
}}"""

WRK_SCRIPT = """
local paths = {}
for _, entry in ipairs({__ENTRIES__}) do
  for _ = 1, entry[2] do table.insert(paths, entry[1]) end
end
local threads = {}
counts = {}
function setup(thread) table.insert(threads, thread) end
function request()
  local path = paths[math.random(#paths)]
  return wrk.format(nil, path)
end
function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end
function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("counts")) do
      total[status] = (total[status] or 0) + n
    end
  end
  for status, n in pairs(total) do
    io.write(string.format("status %d %d\\n", status, n))
  end
end
"""


def fds(pids):
    return sum(len(os.listdir(f"/proc/{pid}/fd")) for pid in pids)


def shm_free():
    text = bench.get("/metrics")
    return sum(int(v) for v in re.findall(r"^proxy_wasm_shm_free_bytes\{[^}]*\} (\d+)", text, re.M))


def mean(values):
    return sum(values) / len(values)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=300)
    args = parser.parse_args()
    interval = max(1, min(10, args.seconds // 20))

    os.makedirs(bench.WORK, exist_ok=True)
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    entries = ", ".join(f'{{"{path}", {weight}}}' for path, weight, _ in MIX)
    script.write(WRK_SCRIPT.replace("__ENTRIES__", entries))
    script.close()

    nginx = bench.Nginx("soak", LOCATIONS, main=MAIN, workers=2,
                        modules=(bench.MODULE, bench.STREAM_MODULE))
    os.makedirs(os.path.join(nginx.prefix, "html", "body"), exist_ok=True)
    with open(os.path.join(nginx.prefix, "html", "body", "page"), "wb") as f:
        f.write(b"soak body " * 400)
    failures = []
    with nginx:
        time.sleep(0.5)
        pids = sorted(nginx.worker_pids())
        load = subprocess.Popen(
            ["taskset", "-c", "1", "wrk", "-t1", "-c32", f"-d{args.seconds}s", "-s", script.name,
             f"http://127.0.0.1:{bench.PORT}/"],
            stdout=subprocess.PIPE, text=True)
        # TCP through the network filters, a new connection per request
        tcp = subprocess.Popen(
            ["taskset", "-c", "1", "wrk", "-t1", "-c4", f"-d{args.seconds}s", "-H", "Connection: close",
             f"http://127.0.0.1:{STREAM}/tcp"],
            stdout=subprocess.PIPE, text=True)
        samples = []
        started = time.monotonic()
        while load.poll() is None:
            time.sleep(interval)
            if load.poll() is not None:
                break
            now = sorted(nginx.worker_pids())
            if now != pids:
                failures.append(f"workers changed: {pids} -> {now}")
                pids = now
            samples.append((time.monotonic() - started, nginx.rss_kib(), fds(now), shm_free()))
            bench.log("t=%4.0fs rss=%6d KiB fds=%4d shm_free=%8d" % samples[-1])
        out = load.stdout.read()
        tcp_out = tcp.communicate()[0]
    os.unlink(script.name)

    tcp_total = int(re.search(r"(\d+) requests in", tcp_out).group(1))
    for problem in re.findall(r"(Socket errors: .*|Non-2xx or 3xx responses: \d+)", tcp_out):
        failures.append(f"TCP through network filters: {problem}")
    if tcp_total == 0:
        failures.append("no TCP connection went through the network filters")

    counts = {int(s): int(n) for s, n in re.findall(r"^status (\d+) (\d+)$", out, re.M)}
    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Socket errors: (.*)", out)
    if errors:
        failures.append(f"socket errors: {errors.group(1)}")
    expected = {}
    for _, weight, status in MIX:
        expected[status] = expected.get(status, 0) + weight
    unexpected = {s: n for s, n in counts.items() if s not in expected}
    if unexpected:
        failures.append(f"unexpected statuses: {unexpected}")
    if len(samples) < 4:
        failures.append(f"only {len(samples)} samples")
    else:
        quarter = max(1, len(samples) // 4)
        early, late = samples[quarter:2 * quarter], samples[-quarter:]
        rss_growth = mean([s[1] for s in late]) - mean([s[1] for s in early])
        fd_growth = mean([s[2] for s in late]) - mean([s[2] for s in early])
        shm_loss = mean([s[3] for s in early]) - mean([s[3] for s in late])
        rss_limit = 2048 + mean([s[1] for s in early]) * 0.03
        if rss_growth > rss_limit:
            failures.append(f"RSS grew by {rss_growth:.0f} KiB after warm-up (limit {rss_limit:.0f})")
        if fd_growth > 8:
            failures.append(f"open files grew by {fd_growth:.1f} after warm-up")
        if shm_loss > 64 * 1024:
            failures.append(f"shared zones lost {shm_loss:.0f} free bytes after warm-up")
        rps = total / args.seconds
        print(f"soak: {total:,} requests in {args.seconds} s ({rps:,.0f}/s) on 2 workers; statuses {counts}")
        print(f"soak: {tcp_total:,} TCP connections through network filters")
        print(f"soak: after warm-up, RSS {mean([s[1] for s in early]):,.0f} -> {mean([s[1] for s in late]):,.0f} KiB,"
              f" open files {mean([s[2] for s in early]):.0f} -> {mean([s[2] for s in late]):.0f},"
              f" shared zones' free bytes {mean([s[3] for s in early]):,.0f} -> {mean([s[3] for s in late]):,.0f}")
    for failure in failures:
        print(f"soak: FAILED: {failure}")
    print(f"soak: {'FAILED' if failures else 'flat'}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
