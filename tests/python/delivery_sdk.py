"""Exports a fixed set of spans once through the real OpenTelemetry SDK's OTLP/gRPC span exporter and
prints, as one JSON object, whether the export succeeded and the ids of the spans it carried. The
SDK's own retry (UNAVAILABLE and the other retryable codes, with backoff, until `--timeout`) is what
gets the spans through a full vigil queue; the exporter's log lines about retries go to stderr."""

import argparse
import json
import logging
import sys
import time

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True)
    p.add_argument("--run", required=True, help="a run id put on every span")
    p.add_argument("--spans", type=int, default=50)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds the SDK may spend retrying")
    args = p.parse_args()

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)

    # Collect finished spans in memory first, so that exactly one export call carries all of them and
    # its result is the SDK's verdict on the whole set.
    collected = InMemorySpanExporter()
    tp = TracerProvider(resource=Resource.create({"service.name": "delivery-sdk", "test.run": args.run}))
    tp.add_span_processor(SimpleSpanProcessor(collected))
    tracer = tp.get_tracer("vigil.delivery.test")
    for i in range(args.spans):
        with tracer.start_as_current_span(f"sdk-span-{i}", attributes={"test.run": args.run, "i": i}):
            pass
    spans = collected.get_finished_spans()

    exporter = OTLPSpanExporter(endpoint=args.endpoint, insecure=True, timeout=args.timeout)
    started = time.monotonic()
    result = exporter.export(spans)
    elapsed = time.monotonic() - started
    exporter.shutdown()

    json.dump(
        {
            "success": result == SpanExportResult.SUCCESS,
            "elapsed_s": elapsed,
            "span_ids": [format(s.get_span_context().span_id, "016x") for s in spans],
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
