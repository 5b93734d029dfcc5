"""OTLP profiles with the OpenTelemetry project's own generated protobuf and gRPC code
(`opentelemetry-proto`, with `grpcio` and `protobuf`): a client and a sink for tests/tests/profiles.rs.

  send --grpc HOST:PORT --http URL   sends one request three times: over gRPC
                                     (ProfilesService/Export), as OTLP/HTTP protobuf and as OTLP/HTTP
                                     JSON; each copy names its transport in a resource attribute.
                                     Prints {"grpc": ..., "http_proto": ..., "http_json": ...}.
  sink --grpc-port P --http-port Q --out FILE
                                     serves ProfilesService/Export over gRPC and
                                     /v1development/profiles over HTTP; appends one JSON line per
                                     request to FILE: {"via": "grpc"|"http", "transport": <the
                                     attribute>, "equal": <request equal to what `send` sent for
                                     that transport, after the test's pipeline>, "samples": n}.

No OTLP profiles *exporter* is published for Python (the SDKs have none yet; the reference client is
the Go eBPF profiler, which needs a privileged kernel probe), so the request is built here with the
generated message classes, the way a profiler fills them.
"""

import argparse
import base64
import gzip
import json
import sys
import threading
import urllib.request
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from google.protobuf import json_format
from opentelemetry.proto.collector.profiles.v1development import (
    profiles_service_pb2 as svc,
    profiles_service_pb2_grpc as svc_grpc,
)
from opentelemetry.proto.common.v1 import common_pb2 as common
from opentelemetry.proto.profiles.v1development import profiles_pb2 as pp
from opentelemetry.proto.resource.v1 import resource_pb2 as resource

TRANSPORTS = ["grpc", "http-proto", "http-json"]


def kv(key, value):
    if isinstance(value, int):
        return common.KeyValue(key=key, value=common.AnyValue(int_value=value))
    return common.KeyValue(key=key, value=common.AnyValue(string_value=value))


def request(transport):
    """Two resources (an application and a containerd shim, which the test's filter drops), one
    CPU profile each, over one dictionary shared by both."""
    strings = ["", "samples", "count", "cpu", "nanoseconds", "main", "handle_checkout",
               "/srv/checkout", "checkout.py", "thread.name", "worker-1", "libc.so.6"]
    s = {v: i for i, v in enumerate(strings)}
    dictionary = pp.ProfilesDictionary(
        string_table=strings,
        mapping_table=[pp.Mapping(), pp.Mapping(memory_start=0x400000, memory_limit=0x800000,
                                                file_offset=0, filename_strindex=s["/srv/checkout"]),
                       pp.Mapping(memory_start=0x7f0000000000, memory_limit=0x7f0000200000,
                                  filename_strindex=s["libc.so.6"])],
        function_table=[pp.Function(),
                        pp.Function(name_strindex=s["main"], system_name_strindex=s["main"],
                                    filename_strindex=s["checkout.py"], start_line=10),
                        pp.Function(name_strindex=s["handle_checkout"],
                                    filename_strindex=s["checkout.py"], start_line=42)],
        location_table=[pp.Location(),
                        pp.Location(mapping_index=1, address=0x401000,
                                    lines=[pp.Line(function_index=1, line=12, column=4)]),
                        pp.Location(mapping_index=1, address=0x402010,
                                    lines=[pp.Line(function_index=2, line=57)]),
                        pp.Location(mapping_index=2, address=0x7f0000001234)],
        stack_table=[pp.Stack(), pp.Stack(location_indices=[2, 1]),
                     pp.Stack(location_indices=[3, 2, 1])],
        link_table=[pp.Link(), pp.Link(trace_id=bytes(range(1, 17)), span_id=bytes(range(1, 9)))],
        attribute_table=[pp.KeyValueAndUnit(),
                         pp.KeyValueAndUnit(key_strindex=s["thread.name"],
                                            value=common.AnyValue(string_value="worker-1"))],
    )

    def profile(values):
        return pp.Profile(
            sample_type=pp.ValueType(type_strindex=s["cpu"], unit_strindex=s["nanoseconds"]),
            period_type=pp.ValueType(type_strindex=s["cpu"], unit_strindex=s["nanoseconds"]),
            period=10_000_000,
            time_unix_nano=1_760_000_000_000_000_000,
            duration_nano=10_000_000_000,
            profile_id=bytes(range(16, 32)),
            attribute_indices=[1],
            original_payload_format="pprof",
            original_payload=b"\x1f\x8b\x08\x00",
            samples=[pp.Sample(stack_index=1 + i % 2, values=[v], attribute_indices=[1],
                               link_index=1 if i == 0 else 0,
                               timestamps_unix_nano=[1_760_000_000_000_000_000 + i])
                     for i, v in enumerate(values)],
        )

    def rp(service, values):
        return pp.ResourceProfiles(
            resource=resource.Resource(attributes=[kv("service.name", service),
                                                   kv("test.transport", transport),
                                                   kv("host.cpu.count", 8)]),
            scope_profiles=[pp.ScopeProfiles(
                scope=common.InstrumentationScope(name="test.profiler", version="1.0"),
                profiles=[profile(values)],
                schema_url="https://opentelemetry.io/schemas/1.38.0")],
            schema_url="https://opentelemetry.io/schemas/1.38.0",
        )

    return svc.ExportProfilesServiceRequest(
        resource_profiles=[rp("checkout", [10_000_000, 20_000_000, 30_000_000]),
                           rp("containerd-shim-runc-v2", [5_000_000])],
        dictionary=dictionary,
    )


def expected(transport):
    """What the test's pipeline makes of `request(transport)`: the shim's resource dropped by the
    filter, `vigil.hop` appended to the other by the resource processor; the dictionary as sent."""
    req = request(transport)
    del req.resource_profiles[1]
    req.resource_profiles[0].resource.attributes.append(kv("vigil.hop", "a"))
    return req


def otlp_json(req):
    """OTLP/JSON: proto3 JSON, except that trace, span and profile ids are hex (the OTLP spec's
    exception to base64 for bytes)."""
    d = json_format.MessageToDict(req)
    hexed = lambda b64: base64.b64decode(b64).hex()
    for link in d.get("dictionary", {}).get("linkTable", []):
        for k in ("traceId", "spanId"):
            if k in link:
                link[k] = hexed(link[k])
    for r in d.get("resourceProfiles", []):
        for sp in r.get("scopeProfiles", []):
            for p in sp.get("profiles", []):
                if "profileId" in p:
                    p["profileId"] = hexed(p["profileId"])
    return json.dumps(d).encode()


def post(url, body, content_type):
    r = urllib.request.Request(url, data=body, method="POST",
                               headers={"Content-Type": content_type})
    with urllib.request.urlopen(r, timeout=10) as resp:
        return resp.status


def send(args):
    out = {}
    with grpc.insecure_channel(args.grpc) as ch:
        stub = svc_grpc.ProfilesServiceStub(ch)
        resp = stub.Export(request("grpc"), timeout=10)
        out["grpc"] = "ok" if not resp.HasField("partial_success") else str(resp.partial_success)
    out["http_proto"] = post(args.http, request("http-proto").SerializeToString(),
                             "application/x-protobuf")
    out["http_json"] = post(args.http, otlp_json(request("http-json")), "application/json")
    print(json.dumps(out))


def record(out, lock, via, req):
    attrs = {a.key: a.value.string_value
             for r in req.resource_profiles for a in r.resource.attributes}
    transport = attrs.get("test.transport", "")
    want = expected(transport) if transport in TRANSPORTS else None
    line = {
        "via": via,
        "transport": transport,
        "equal": want is not None and req.SerializeToString(deterministic=True)
        == want.SerializeToString(deterministic=True),
        "samples": sum(len(p.samples) for r in req.resource_profiles
                       for s in r.scope_profiles for p in s.profiles),
    }
    if not line["equal"]:
        line["got"] = json_format.MessageToDict(req)
    with lock, open(out, "a") as f:
        f.write(json.dumps(line) + "\n")


def sink(args):
    lock = threading.Lock()

    class Service(svc_grpc.ProfilesServiceServicer):
        def Export(self, req, context):
            record(args.out, lock, "grpc", req)
            return svc.ExportProfilesServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    svc_grpc.add_ProfilesServiceServicer_to_server(Service(), server)
    server.add_insecure_port(f"127.0.0.1:{args.grpc_port}")
    server.start()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            ok = self.path == "/v1development/profiles" and \
                self.headers.get("Content-Type") == "application/x-protobuf"
            if ok:
                req = svc.ExportProfilesServiceRequest()
                req.ParseFromString(body)
                record(args.out, lock, "http", req)
            self.send_response(200 if ok else 400)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()
            self.wfile.write(svc.ExportProfilesServiceResponse().SerializeToString())

        def log_message(self, *a):
            pass

    http = ThreadingHTTPServer(("127.0.0.1", args.http_port), Handler)
    print("ready", flush=True)
    http.serve_forever()


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("send")
    s.add_argument("--grpc", required=True)
    s.add_argument("--http", required=True)
    k = sub.add_parser("sink")
    k.add_argument("--grpc-port", type=int, required=True)
    k.add_argument("--http-port", type=int, required=True)
    k.add_argument("--out", required=True)
    args = ap.parse_args()
    {"send": send, "sink": sink}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
