"""Records exceptions on spans with the real OpenTelemetry Python SDK (span.record_exception on
exceptions really raised and caught, so each has a stack trace) and sends them to an OTLP/gRPC
endpoint, then prints, as one JSON object, the exceptions it recorded (span name, type, message),
so that the Rust test can check the exceptions connector's counts and log records."""

import argparse
import json

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode


def fail(kind, message):
    raise kind(message)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True)
    args = p.parse_args()

    tp = TracerProvider(resource=Resource.create({"service.name": "cart"}))
    tp.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=args.endpoint, insecure=True)))
    tracer = tp.get_tracer("vigil.exceptions.test", "0.1")
    plan = [
        ("GET /cart", ValueError, "bad quantity"),
        ("GET /cart", ValueError, "bad quantity"),
        ("GET /cart", KeyError, "user"),
        ("POST /pay", TimeoutError, "bank timed out"),
        ("POST /pay", None, None),
    ]
    sent = []
    for name, kind, message in plan:
        with tracer.start_as_current_span(name, kind=SpanKind.SERVER, record_exception=False,
                                          set_status_on_exception=False) as span:
            span.set_attribute("http.method", name.split()[0])
            if kind is None:
                continue
            try:
                fail(kind, message)
            except Exception as e:  # noqa: BLE001 - recorded, as an instrumentation would
                span.record_exception(e)
                span.set_status(Status(StatusCode.ERROR, str(e)))
                sent.append({"span": name, "type": type(e).__name__, "message": str(e)})
    tp.shutdown()
    print(json.dumps({"exceptions": sent}))


if __name__ == "__main__":
    main()
