"""Sends StatsD metrics to vigil's `statsd` receiver with the real `statsd` client (pystatsd).

Usage: statsd_client.py HOST PORT udp|tcp. Prints {"sent": true} once every metric is written.
pystatsd writes counters (with sample rates), gauges (set and +/- deltas) and timers; DogStatsD
tags are outside its protocol, so one raw datagram with tags (and one bad line) is sent beside it
over UDP.
"""
import json
import random
import socket
import sys

import statsd

host, port, transport = sys.argv[1], int(sys.argv[2]), sys.argv[3]
# pystatsd drops a sampled metric unless random() < rate; sending always keeps the test exact,
# and the line still carries its @rate for the receiver to scale by.
random.random = lambda: 0.0

if transport == "tcp":
    c = statsd.TCPStatsClient(host, port)
else:
    c = statsd.StatsClient(host, port)
for _ in range(3):
    c.incr("hits")
c.incr("hits", 5)
c.decr("hits.down", 2)
for _ in range(3):
    c.incr("sampled", 2, rate=0.5)
c.gauge("temp", 20)
c.gauge("temp", 5, delta=True)
c.gauge("temp", -3, delta=True)
for ms in (100, 200, 300):
    c.timing("lat", ms)
if transport == "tcp":
    c.close()
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(
        b"tagged:1|c|#env:prod,region:eu\n"
        b"tagged:2|c|#region:eu,env:prod\n"
        b"this is not statsd\n"
        b"tagged:4|c|#env:dev",
        (host, port),
    )
print(json.dumps({"sent": True}))
