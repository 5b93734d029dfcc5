"""Sends a few traces to vigil with one of the OpenTelemetry Python SDK's Jaeger or Zipkin
exporters, then prints, as one JSON object, exactly what it sent (ids, parents, names, kinds,
attributes, status), so that the Rust test can compare it with what arrived.

Exporters (`--exporter`):
  jaeger-thrift-http     Jaeger Thrift exporter, collector mode: Thrift binary POST /api/traces
  jaeger-thrift-compact  Jaeger Thrift exporter, agent mode: emitBatch over UDP, compact encoding
  jaeger-thrift-binary   the same client with the Thrift library's binary protocol (what Jaeger's
                         other clients send to the agent's port 6832)
  jaeger-grpc            Jaeger protobuf exporter: jaeger.api_v2.CollectorService/PostSpans
  zipkin-json-v2         Zipkin JSON exporter, v2 (/api/v2/spans)
  zipkin-json-v1         Zipkin JSON exporter, v1 (/api/v1/spans)
  zipkin-proto           Zipkin protobuf exporter (/api/v2/spans, application/x-protobuf)
"""

import argparse
import json

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode


def exporter(name, host, port):
    if name == "jaeger-thrift-http":
        from opentelemetry.exporter.jaeger.thrift import JaegerExporter

        return JaegerExporter(collector_endpoint=f"http://{host}:{port}/api/traces?format=jaeger.thrift")
    if name in ("jaeger-thrift-compact", "jaeger-thrift-binary"):
        from opentelemetry.exporter.jaeger.thrift import JaegerExporter

        exp = JaegerExporter(agent_host_name=host, agent_port=port)
        if name == "jaeger-thrift-binary":
            from opentelemetry.exporter.jaeger.thrift.gen.agent import Agent
            from thrift.protocol import TBinaryProtocol

            udp = exp._agent_client  # pylint: disable=protected-access
            udp.client = Agent.Client(iprot=TBinaryProtocol.TBinaryProtocol(trans=udp.buffer))
        return exp
    if name == "jaeger-grpc":
        from opentelemetry.exporter.jaeger.proto.grpc import JaegerExporter

        return JaegerExporter(collector_endpoint=f"{host}:{port}", insecure=True)
    if name.startswith("zipkin-json"):
        from opentelemetry.exporter.zipkin.encoder import Protocol
        from opentelemetry.exporter.zipkin.json import ZipkinExporter

        if name.endswith("v1"):
            # The v1 encoder compares max_tag_value_length with 0 without a None check (1.45.1), so
            # it needs a value; 1024 cuts none of the test's tags.
            return ZipkinExporter(
                version=Protocol.V1, endpoint=f"http://{host}:{port}/api/v1/spans", max_tag_value_length=1024
            )
        return ZipkinExporter(version=Protocol.V2, endpoint=f"http://{host}:{port}/api/v2/spans")
    if name == "zipkin-proto":
        from opentelemetry.exporter.zipkin.proto.http import ZipkinExporter

        return ZipkinExporter(endpoint=f"http://{host}:{port}/api/v2/spans")
    raise SystemExit(f"unknown exporter {name}")


def record(span):
    ctx = span.get_span_context()
    parent = span.parent.span_id if span.parent else 0
    return {
        "name": span.name,
        "trace_id": f"{ctx.trace_id:032x}",
        "span_id": f"{ctx.span_id:016x}",
        "parent_id": f"{parent:016x}" if parent else "",
        "kind": span.kind.name,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes),
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--exporter", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--run", required=True, help="a run id put on every span")
    p.add_argument("--traces", type=int, default=3)
    args = p.parse_args()

    resource = Resource.create({"service.name": f"svc-{args.exporter}", "test.run": args.run})
    tp = TracerProvider(resource=resource)
    tp.add_span_processor(BatchSpanProcessor(exporter(args.exporter, args.host, args.port)))
    tracer = tp.get_tracer("vigil.trace.test", "1.2.3")
    sent = []
    for i in range(args.traces):
        with tracer.start_as_current_span(
            f"root-{i}", kind=SpanKind.SERVER, attributes={"test.run": args.run, "i": i, "http.method": "GET"}
        ) as root:
            with tracer.start_as_current_span(
                f"child-{i}",
                kind=SpanKind.CLIENT,
                attributes={"test.run": args.run, "ratio": 0.5, "flag": True},
            ) as child:
                pass
            with tracer.start_as_current_span(f"fail-{i}", attributes={"test.run": args.run}) as fail:
                fail.add_event("retrying", {"attempt": 2})
                fail.set_status(Status(StatusCode.ERROR, "boom"))
        sent += [record(root), record(child), record(fail)]
    tp.shutdown()
    print(json.dumps({"spans": sent}))


if __name__ == "__main__":
    main()
