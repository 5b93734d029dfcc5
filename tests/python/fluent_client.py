"""Sends logs to a Fluent Forward receiver at HOST PORT as real Fluent clients do, and prints JSON.

fluent-logger (fluentd's Python client) sends Message-mode events, with EventTime and with a `chunk`
option whose ack it checks. The other modes fluentd and Fluent Bit use (Forward, PackedForward,
CompressedPackedForward) are encoded with the msgpack package fluent-logger itself uses, over a plain
socket, each with a chunk so the ack can be read back. A heartbeat is a UDP datagram to the port.
"""
import gzip
import json
import socket
import sys

import msgpack
from fluent import sender
from fluent.sender import EventTime

host, port = sys.argv[1], int(sys.argv[2])
out = {}

acked = sender.FluentSender("app", host=host, port=port, nanosecond_precision=True, request_ack=True, timeout=10)
out["message_acked"] = acked.emit_with_time("web", EventTime(1700000000.25), {"log": "hello from fluent-logger", "status": 200})
out["message_acked_error"] = str(acked.last_error) if acked.last_error else None
acked.close()

plain = sender.FluentSender("app", host=host, port=port, timeout=10)
out["message_plain"] = plain.emit_with_time("db", 1700000001, {"message": "second", "nested": {"k": [1, 2]}})
plain.close()


def send(payload, chunk):
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(msgpack.packb(payload, use_bin_type=True))
    unpacker = msgpack.Unpacker(raw=False)
    while True:
        data = s.recv(4096)
        if not data:
            break
        unpacker.feed(data)
        for ack in unpacker:
            s.close()
            return ack.get("ack") == chunk
    s.close()
    return False


def entry(t, msg):
    return [t, {"log": msg}]


out["forward"] = send(["fwd", [entry(1700000002, "f1"), entry(1700000003, "f2")], {"chunk": "Zm9yd2FyZA=="}], "Zm9yd2FyZA==")
packed = b"".join(msgpack.packb(entry(1700000004 + i, "p%d" % i)) for i in range(3))
out["packed"] = send(["pk", packed, {"chunk": "cGFja2Vk", "size": 3}], "cGFja2Vk")
out["compressed"] = send(["gz", gzip.compress(packed), {"chunk": "Z3o=", "size": 3, "compressed": "gzip"}], "Z3o=")

u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(10)
u.sendto(b"\x00", (host, port))
out["heartbeat"] = u.recvfrom(16)[0].hex()
print(json.dumps(out))
