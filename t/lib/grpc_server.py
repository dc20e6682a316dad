#!/usr/bin/python3
"""A gRPC server for the tests (Debian's python3-grpcio), without protobuf:
messages are raw bytes, read as UTF-8 text where a number or a word is
expected.

  grpc_server.py PORT [CERT KEY] [LOG]

Listens on 127.0.0.1:PORT (TLS with CERT and KEY), until SIGTERM. LOG, if
given, gets a line for each call the server saw end, and how.

Services:
  test.Echo/Echo      unary: the message back; metadata x-status (and
                      x-message) makes it fail with that status; x-user
                      comes back as initial metadata x-echo-user; trailing
                      metadata x-trailer: done
  test.Echo/Sleep     unary: waits the milliseconds the message says
  test.Echo/Big       unary: a message of the size the message says
  test.Echo/Count     server streaming: "N" gives N messages "message i";
                      trailing metadata x-count: N and x-peer: the
                      client's address
  test.Echo/Concat    client streaming: the messages joined with "+"
  test.Echo/Chat      bidirectional: "echo: m" for each message m; ends
                      after "bye"
  test.Echo/Hang      bidirectional: reads until the client goes, answers
                      nothing; logs whether it was cancelled
  test.Auth/Check     unary: OK with "welcome <user>" when metadata
                      x-user is alice, else PERMISSION_DENIED
"""

import signal
import sys
import threading
import time
from concurrent import futures

import grpc

port = int(sys.argv[1])
cert = key = None
log_path = None
if len(sys.argv) >= 4:
    cert, key = sys.argv[2], sys.argv[3]
    log_path = sys.argv[4] if len(sys.argv) >= 5 else None
elif len(sys.argv) == 3:
    log_path = sys.argv[2]

log_lock = threading.Lock()


def log(line):
    if log_path:
        with log_lock, open(log_path, "a") as f:
            f.write(line + "\n")


def metadata(context):
    return {k: v for k, v in context.invocation_metadata()}


def echo(request, context):
    md = metadata(context)
    if "x-user" in md:
        context.send_initial_metadata((("x-echo-user", md["x-user"]),))
    context.set_trailing_metadata((("x-trailer", "done"),))
    if "x-status" in md:
        code = next(c for c in grpc.StatusCode if c.value[0] == int(md["x-status"]))
        context.abort(code, md.get("x-message", ""))
    return request


def sleep(request, context):
    time.sleep(int(request.decode() or "0") / 1000)
    return b"slept"


def big(request, context):
    n = int(request.decode() or "0")
    return bytes(ord("a") + i % 26 for i in range(n))


def count(request, context):
    for i in range(int(request.decode() or "0")):
        yield ("message %d" % (i + 1)).encode()
    context.set_trailing_metadata((("x-count", request.decode()), ("x-peer", context.peer())))


def concat(requests, context):
    return b"+".join(requests)


def chat(requests, context):
    for message in requests:
        yield b"echo: " + message
        if message == b"bye":
            return


def hang(requests, context):
    try:
        for _ in requests:
            pass
        log("Hang: the client closed its side")
    except Exception:
        pass
    if not context.is_active():
        log("Hang: cancelled")
    return iter(())


def check(request, context):
    user = metadata(context).get("x-user", "")
    if user != "alice":
        context.abort(grpc.StatusCode.PERMISSION_DENIED, "%s may not" % (user or "nobody"))
    return b"welcome " + user.encode()


def raw(kind, f):
    same = lambda b: b
    return getattr(grpc, kind)(f, request_deserializer=same, response_serializer=same)


handlers = [
    grpc.method_handlers_generic_handler("test.Echo", {
        "Echo": raw("unary_unary_rpc_method_handler", echo),
        "Sleep": raw("unary_unary_rpc_method_handler", sleep),
        "Big": raw("unary_unary_rpc_method_handler", big),
        "Count": raw("unary_stream_rpc_method_handler", count),
        "Concat": raw("stream_unary_rpc_method_handler", concat),
        "Chat": raw("stream_stream_rpc_method_handler", chat),
        "Hang": raw("stream_stream_rpc_method_handler", hang),
    }),
    grpc.method_handlers_generic_handler("test.Auth", {
        "Check": raw("unary_unary_rpc_method_handler", check),
    }),
]

options = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]
server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), handlers=handlers, options=options)
address = "127.0.0.1:%d" % port
if cert:
    with open(cert, "rb") as c, open(key, "rb") as k:
        credentials = grpc.ssl_server_credentials(((k.read(), c.read()),))
    server.add_secure_port(address, credentials)
else:
    server.add_insecure_port(address)
server.start()

stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
signal.signal(signal.SIGINT, lambda *_: stop.set())
# the parent may die without a signal: a server left alone stops
deadline = time.time() + 600
while not stop.wait(0.5) and time.time() < deadline:
    pass
server.stop(0)
