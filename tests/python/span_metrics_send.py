"""Sends spans with chosen durations, kinds, statuses and attributes to an OTLP/gRPC endpoint with the
real OpenTelemetry Python SDK, then prints, as one JSON object, what it sent (name, kind, status,
duration in nanoseconds, attributes), so that the Rust test can compute the span metrics it expects."""

import argparse
import json
import random

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True)
    p.add_argument("--run", required=True, help="a run id put on the resource")
    p.add_argument("--spans", type=int, default=60)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()

    rng = random.Random(args.seed)
    resource = Resource.create({"service.name": "checkout", "test.run": args.run})
    tp = TracerProvider(resource=resource)
    tp.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=args.endpoint, insecure=True)))
    tracer = tp.get_tracer("vigil.spanmetrics.test", "0.1")
    sent = []
    base = 1_700_000_000_000_000_000
    for i in range(args.spans):
        name, kind = rng.choice([("GET /cart", SpanKind.SERVER), ("POST /pay", SpanKind.SERVER), ("SELECT", SpanKind.CLIENT)])
        method = rng.choice(["GET", "POST", None])
        # Durations spread over the default buckets (2 ms .. 15 s), some on a bound exactly.
        ms = rng.choice([1, 2, 3, 7, 10, 45, 100, 350, 1000, 1500, 4000, 20000])
        start = base + i * 1_000_000_000
        attrs = {"test.run": args.run}
        if method:
            attrs["http.method"] = method
        span = tracer.start_span(name, kind=kind, attributes=attrs, start_time=start)
        failed = rng.random() < 0.25
        if failed:
            span.set_status(Status(StatusCode.ERROR, "boom"))
        span.end(end_time=start + ms * 1_000_000)
        sent.append({
            "name": name,
            "kind": "SPAN_KIND_" + kind.name,
            "status": "STATUS_CODE_ERROR" if failed else "STATUS_CODE_UNSET",
            "duration_ns": ms * 1_000_000,
            "http.method": method,
        })
    tp.shutdown()
    print(json.dumps({"spans": sent}))


if __name__ == "__main__":
    main()
