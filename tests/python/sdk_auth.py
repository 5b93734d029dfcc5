"""Sends three spans over OTLP (plain gRPC or HTTP) with the real OpenTelemetry Python SDK exporter,
with the given request headers (the credentials under test) and resource attributes, and prints the
export result as JSON ({"result": "SUCCESS"} or {"result": "FAILURE"})."""

import argparse
import base64
import json
import logging

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def pairs(values):
    out = {}
    for v in values or []:
        if v.startswith("basic:"):
            # HTTP Basic credentials, encoded here so that the test passes user and password as is.
            creds = base64.b64encode(v[len("basic:"):].encode()).decode()
            out["authorization"] = f"Basic {creds}"
            continue
        k, _, val = v.partition("=")
        out[k] = val
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--protocol", choices=["grpc", "http"], required=True)
    p.add_argument("--endpoint", required=True)
    p.add_argument("--run", required=True)
    p.add_argument(
        "--header",
        action="append",
        help="key=value, sent on the export request; basic:user:password for HTTP Basic",
    )
    p.add_argument("--attr", action="append", help="key=value, a resource attribute")
    # Generous: on a loaded machine the first connection can take seconds.
    p.add_argument("--timeout", type=float, default=20)
    args = p.parse_args()
    # Refusals are expected; keep the SDK's warnings off stdout's JSON.
    logging.basicConfig(level=logging.CRITICAL)
    headers = pairs(args.header) or None
    if args.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(
            endpoint=args.endpoint, insecure=True, timeout=args.timeout, headers=headers
        )
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(
            endpoint=args.endpoint.rstrip("/") + "/v1/traces", timeout=args.timeout, headers=headers
        )
    memory = InMemorySpanExporter()
    attrs = {"service.name": "sdk-auth", "test.run": args.run}
    attrs.update(pairs(args.attr))
    tp = TracerProvider(resource=Resource.create(attrs))
    tp.add_span_processor(SimpleSpanProcessor(memory))
    tracer = tp.get_tracer("vigil.sdk.auth")
    for i in range(3):
        with tracer.start_as_current_span(f"auth-{i}"):
            pass
    print(json.dumps({"result": exporter.export(memory.get_finished_spans()).name}))


if __name__ == "__main__":
    main()
