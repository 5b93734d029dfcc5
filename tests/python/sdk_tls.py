"""Sends three spans over OTLP with TLS, with the real OpenTelemetry Python SDK exporter, and prints
the export result as JSON ({"result": "SUCCESS"} or {"result": "FAILURE"}). The CA is always given;
the client certificate and key only when --cert and --key are."""

import argparse
import json
import logging
import os

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def exporter(args):
    if args.protocol == "grpc":
        import grpc
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        read = lambda p: open(p, "rb").read() if p else None
        creds = grpc.ssl_channel_credentials(
            root_certificates=read(args.ca),
            private_key=read(args.key),
            certificate_chain=read(args.cert),
        )
        return OTLPSpanExporter(
            endpoint=args.endpoint, credentials=creds, timeout=args.timeout, headers=headers(args)
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(
        endpoint=args.endpoint.rstrip("/") + "/v1/traces",
        certificate_file=args.ca,
        client_certificate_file=args.cert,
        client_key_file=args.key,
        timeout=args.timeout,
        headers=headers(args),
    )


def headers(args):
    if not args.token:
        return None
    return {"authorization": f"Bearer {args.token}"}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--protocol", choices=["grpc", "http"], required=True)
    p.add_argument("--endpoint", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--run", required=True)
    p.add_argument("--token", help="sent as 'authorization: Bearer <token>'")
    # Generous: on a loaded machine the first connection and handshake can take seconds.
    p.add_argument("--timeout", type=float, default=20)
    args = p.parse_args()
    # requests lets these variables replace a session's CA bundle, which is how the SDK passes
    # certificate_file: with one set, the test's CA would be ignored.
    os.environ.pop("REQUESTS_CA_BUNDLE", None)
    os.environ.pop("CURL_CA_BUNDLE", None)
    # The refused handshakes are expected; keep the SDK's retry warnings off stdout's JSON.
    logging.basicConfig(level=logging.CRITICAL)

    memory = InMemorySpanExporter()
    tp = TracerProvider(resource=Resource.create({"service.name": "sdk-tls", "test.run": args.run}))
    tp.add_span_processor(SimpleSpanProcessor(memory))
    tracer = tp.get_tracer("vigil.sdk.tls")
    for i in range(3):
        with tracer.start_as_current_span(f"tls-{i}", attributes={"test.run": args.run}):
            pass
    result = exporter(args).export(memory.get_finished_spans())
    print(json.dumps({"result": result.name}))


if __name__ == "__main__":
    main()
