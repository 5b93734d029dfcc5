"""Sends traces, metrics and logs to an OTLP endpoint with the real OpenTelemetry Python SDK, then
prints, as one JSON object, exactly what it sent, so that the Rust test can compare it with what
arrived at the far end."""

import argparse
import json
import logging
import sys

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor


def exporters(protocol, endpoint):
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

        return (
            OTLPSpanExporter(endpoint=endpoint, insecure=True),
            OTLPMetricExporter(endpoint=endpoint, insecure=True),
            OTLPLogExporter(endpoint=endpoint, insecure=True),
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    base = endpoint.rstrip("/")
    return (
        OTLPSpanExporter(endpoint=base + "/v1/traces"),
        OTLPMetricExporter(endpoint=base + "/v1/metrics"),
        OTLPLogExporter(endpoint=base + "/v1/logs"),
    )


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True)
    p.add_argument("--protocol", choices=["grpc", "http"], required=True)
    p.add_argument("--run", required=True, help="a run id put on every item")
    p.add_argument("--spans", type=int, default=50)
    p.add_argument("--logs", type=int, default=50)
    args = p.parse_args()

    resource = Resource.create({"service.name": "sdk-test", "test.run": args.run})
    span_exp, metric_exp, log_exp = exporters(args.protocol, args.endpoint)

    tp = TracerProvider(resource=resource)
    tp.add_span_processor(BatchSpanProcessor(span_exp))
    tracer = tp.get_tracer("vigil.sdk.test")
    sent_spans = []
    for i in range(args.spans // 2):
        with tracer.start_as_current_span(f"parent-{i}", attributes={"test.run": args.run, "i": i}) as parent:
            with tracer.start_as_current_span(f"child-{i}", attributes={"test.run": args.run, "i": i, "kind": "child"}) as child:
                pass
        for s in (parent, child):
            ctx = s.get_span_context()
            sent_spans.append({"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x"), "name": s.name})
    tp.force_flush()
    tp.shutdown()

    reader = PeriodicExportingMetricReader(metric_exp, export_interval_millis=60_000)
    mp = MeterProvider(resource=resource, metric_readers=[reader])
    meter = mp.get_meter("vigil.sdk.test")
    counter = meter.create_counter("sdk.requests", unit="1", description="requests served")
    hist = meter.create_histogram("sdk.latency", unit="ms")
    for i in range(10):
        counter.add(1, {"route": f"/r{i % 2}"})
        hist.record(i * 10.0, {"route": "/r0"})
    mp.force_flush()
    mp.shutdown()

    lp = LoggerProvider(resource=resource)
    lp.add_log_record_processor(BatchLogRecordProcessor(log_exp))
    handler = LoggingHandler(level=logging.INFO, logger_provider=lp)
    log = logging.getLogger("vigil.sdk.test")
    log.setLevel(logging.INFO)
    log.propagate = False
    log.addHandler(handler)
    sent_logs = []
    for i in range(args.logs):
        body = f"run {args.run} log line {i}"
        if i % 5 == 0:
            log.warning(body, extra={"test.run": args.run, "i": i})
        else:
            log.info(body, extra={"test.run": args.run, "i": i})
        sent_logs.append(body)
    lp.force_flush()
    lp.shutdown()

    json.dump({"spans": sent_spans, "logs": sent_logs,
               "metrics": {"sdk.requests": {"/r0": 5, "/r1": 5}, "sdk.latency": {"count": 10, "sum": 450.0}}},
              sys.stdout)


if __name__ == "__main__":
    main()
