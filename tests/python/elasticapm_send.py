"""Sends traces shaped like an instrumented web service to an OTLP/gRPC endpoint with the real
OpenTelemetry Python SDK: per request a SERVER span (HTTP semantic conventions), a CLIENT database
child and, for some, an exception event and an ERROR status. Prints, as one JSON object, what it
sent (trace and span ids, names, durations, HTTP status, outcome), so that the Rust test can derive
the Elastic APM attributes and aggregated metrics it expects."""

import argparse
import json

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True)
    p.add_argument("--run", required=True, help="a run id put on the resource")
    p.add_argument("--requests", type=int, default=12)
    args = p.parse_args()

    resource = Resource.create({
        "service.name": "shop",
        "deployment.environment.name": "qa",
        "host.name": "web-1",
        "test.run": args.run,
    })
    tp = TracerProvider(resource=resource)
    tp.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=args.endpoint, insecure=True)))
    tracer = tp.get_tracer("vigil.elasticapm.test", "1.2")
    base = 1_700_000_000_000_000_000
    sent = []
    for i in range(args.requests):
        route = ["GET /cart", "POST /pay"][i % 2]
        failed = i % 4 == 3
        status_code = 500 if failed else 200
        # Durations in whole microseconds: server 10..65 ms, its query a fifth of it.
        server_us = 10_000 + 5_000 * i
        db_us = server_us // 5
        start = base + i * 1_000_000_000
        root = tracer.start_span(
            route,
            kind=SpanKind.SERVER,
            start_time=start,
            attributes={"http.request.method": route.split()[0], "http.response.status_code": status_code},
        )
        ctx = set_span_in_context(root)
        db = tracer.start_span(
            "SELECT items",
            kind=SpanKind.CLIENT,
            context=ctx,
            start_time=start + 1000,
            attributes={"db.system": "postgresql", "db.name": "shop"},
        )
        db.end(end_time=start + 1000 + db_us * 1000)
        if failed:
            root.add_event("exception", {"exception.type": "RuntimeError", "exception.message": "card declined"}, timestamp=start + 2000)
            root.set_status(Status(StatusCode.ERROR, "card declined"))
        root.end(end_time=start + server_us * 1000)
        sent.append({
            "trace_id": format(root.get_span_context().trace_id, "032x"),
            "root_id": format(root.get_span_context().span_id, "016x"),
            "route": route,
            "server_us": server_us,
            "db_us": db_us,
            "failed": failed,
        })
    tp.shutdown()
    print(json.dumps({"requests": sent}))


if __name__ == "__main__":
    main()
