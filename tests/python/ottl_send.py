"""Sends the traffic of the OTTL end-to-end test with the real OpenTelemetry Python SDK over OTLP/gRPC:
spans from two tenants (one resource each), logs with JSON and plain bodies, and a counter. Prints, as
one JSON object, what the test needs to check the transformed and routed output (the SHA-256 of the
e-mail addresses it put on spans, so the Rust side need not hash)."""

import argparse
import hashlib
import json
import logging
import sys

from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True)
    args = p.parse_args()
    emails = {}

    for tenant in ("acme", "ecorp"):
        res = Resource.create({"service.name": f"shop-{tenant}", "tenant": tenant})
        tp = TracerProvider(resource=res)
        tp.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=args.endpoint, insecure=True)))
        tracer = tp.get_tracer("ottl.test")
        for i, status in enumerate((200, 503)):
            email = f"user{i}@{tenant}.example"
            emails[f"{tenant}/{i}"] = hashlib.sha256(email.encode()).hexdigest()
            attrs = {
                "http.route": "/users/{id}",
                "http.response.status_code": status,
                "user.email": email,
                "a": 1, "b": 2, "c": 3, "d": 4, "e": 5,
            }
            with tracer.start_as_current_span(f"GET /users/{1000 + i}", kind=SpanKind.SERVER, attributes=attrs):
                pass
        tp.shutdown()

    res = Resource.create({"service.name": "shop-logs"})
    lp = LoggerProvider(resource=res)
    lp.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=args.endpoint, insecure=True)))
    log = logging.getLogger("ottl.test")
    log.setLevel(logging.INFO)
    log.propagate = False
    log.addHandler(LoggingHandler(level=logging.INFO, logger_provider=lp))
    bodies = [
        json.dumps({"level": "ERROR", "msg": "payment failed", "order": "o-1"}),
        json.dumps({"level": "INFO", "msg": "payment ok", "order": "o-2"}),
        "plain text line",
    ]
    for b in bodies:
        log.info(b)
    lp.shutdown()

    mp = MeterProvider(
        resource=Resource.create({"service.name": "shop-metrics"}),
        metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=args.endpoint, insecure=True), export_interval_millis=60_000)],
    )
    c = mp.get_meter("ottl.test").create_counter("ottl.requests", unit="1", description="requests")
    c.add(3, {"route": "/a"})
    mp.force_flush()
    mp.shutdown()

    json.dump({"emails": emails, "bodies": bodies}, sys.stdout)


if __name__ == "__main__":
    main()
