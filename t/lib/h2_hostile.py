#!/usr/bin/python3
"""An HTTP/2 server that misbehaves as gRPC calls' tests need, on Debian's
python3-h2, one thread per connection.

  h2_hostile.py PORT

Listens on 127.0.0.1:PORT until SIGTERM. What a request gets depends on
its method (the last part of its :path):

  Goaway      GOAWAY (PROTOCOL_ERROR, no stream processed), then the close
  Refused     RST_STREAM REFUSED_STREAM
  Cancel      RST_STREAM CANCEL
  Protocol    RST_STREAM PROTOCOL_ERROR
  Drop        the response's headers and half a message, then the
              connection closes
  NoTrailers  a message, and DATA with END_STREAM: no status
  Http503     a 503 response without grpc-status
  Compressed  a message flagged compressed
  Truncated   half a message, then trailers
  Silent      nothing, ever
  Count       the connection's small window (1000 bytes) and 16 KiB
              frames: the answer is how many message bytes came
"""

import signal
import socket
import sys
import threading

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings


def frame(message, flag=0):
    return bytes([flag]) + len(message).to_bytes(4, "big") + message


OK_HEADERS = [(":status", "200"), ("content-type", "application/grpc")]


def answer(conn, sock, stream, method, received):
    if method == "Goaway":
        conn.close_connection(error_code=h2.errors.ErrorCodes.PROTOCOL_ERROR, last_stream_id=0)
        sock.sendall(conn.data_to_send())
        return False
    if method == "Silent":
        return True
    if method in ("Refused", "Cancel", "Protocol"):
        code = {"Refused": h2.errors.ErrorCodes.REFUSED_STREAM,
                "Cancel": h2.errors.ErrorCodes.CANCEL,
                "Protocol": h2.errors.ErrorCodes.PROTOCOL_ERROR}[method]
        conn.reset_stream(stream, error_code=code)
    elif method == "Drop":
        conn.send_headers(stream, OK_HEADERS)
        conn.send_data(stream, frame(b"0123456789")[:8])
        sock.sendall(conn.data_to_send())
        return False
    elif method == "NoTrailers":
        conn.send_headers(stream, OK_HEADERS)
        conn.send_data(stream, frame(b"no status"), end_stream=True)
    elif method == "Http503":
        conn.send_headers(stream, [(":status", "503")], end_stream=True)
    elif method == "Compressed":
        conn.send_headers(stream, OK_HEADERS)
        conn.send_data(stream, frame(b"zipped?", flag=1))
        conn.send_headers(stream, [("grpc-status", "0")], end_stream=True)
    elif method == "Truncated":
        conn.send_headers(stream, OK_HEADERS)
        conn.send_data(stream, frame(b"0123456789")[:8])
        conn.send_headers(stream, [("grpc-status", "0")], end_stream=True)
    else:
        conn.send_headers(stream, OK_HEADERS)
        conn.send_data(stream, frame(str(received - 5).encode()))
        conn.send_headers(stream, [("grpc-status", "0")], end_stream=True)
    sock.sendall(conn.data_to_send())
    return True


def serve(sock):
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    conn.initiate_connection()
    conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000})
    sock.sendall(conn.data_to_send())
    methods = {}
    received = {}
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    path = dict(event.headers)[b":path"].decode()
                    methods[event.stream_id] = path.rsplit("/", 1)[-1]
                    received[event.stream_id] = 0
                    if methods[event.stream_id] != "Count":
                        if not answer(conn, sock, event.stream_id, methods[event.stream_id], 0):
                            return
                elif isinstance(event, h2.events.DataReceived):
                    received[event.stream_id] = received.get(event.stream_id, 0) + len(event.data)
                    # the window reopens as the data is taken, 1000 at most
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    if methods.get(event.stream_id) == "Count":
                        answer(conn, sock, event.stream_id, "Count", received[event.stream_id])
            sock.sendall(conn.data_to_send())
    except Exception as e:
        print("h2_hostile: %s" % e, file=sys.stderr)
    finally:
        sock.close()


listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", int(sys.argv[1])))
listener.listen(64)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
listener.settimeout(600)
while True:
    try:
        client, _ = listener.accept()
    except socket.timeout:
        break
    threading.Thread(target=serve, args=(client,), daemon=True).start()
