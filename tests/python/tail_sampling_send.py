"""Sends traces with the real OpenTelemetry Python SDK over OTLP/gRPC for the tail_sampling test.
Each trace's child span is exported in one request and its root span in a later one (force_flush
between), so a trace reaches vigil in separate batches. Kinds of trace: "error" (the child has status
ERROR), "slow" (the root lasts 400 ms), "fast" (neither). Prints, as JSON, every span sent by kind."""

import argparse
import json
import time

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.trace import Status, StatusCode


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True)
    p.add_argument("--fast", type=int, default=6)
    args = p.parse_args()

    tp = TracerProvider(resource=Resource.create({"service.name": "tail-sampling-test"}))
    tp.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=args.endpoint, insecure=True)))
    tracer = tp.get_tracer("vigil.tail_sampling.test")
    sent = {"error": [], "slow": [], "fast": []}
    kinds = ["error", "slow"] + ["fast"] * args.fast
    for i, kind in enumerate(kinds):
        root = tracer.start_span(f"{kind}-root-{i}")
        ctx = __import__("opentelemetry.trace", fromlist=["set_span_in_context"]).set_span_in_context(root)
        child = tracer.start_span(f"{kind}-child-{i}", context=ctx)
        if kind == "error":
            child.set_status(Status(StatusCode.ERROR, "boom"))
        child.end()
        tp.force_flush()  # the child goes out alone
        if kind == "slow":
            time.sleep(0.4)
        root.end()
        tp.force_flush()  # then the root, in a second request
        tid = format(root.get_span_context().trace_id, "032x")
        sent[kind].append({"trace_id": tid, "spans": [f"{kind}-child-{i}", f"{kind}-root-{i}"]})
    tp.shutdown()
    print(json.dumps(sent))


if __name__ == "__main__":
    main()
