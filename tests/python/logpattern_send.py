"""Sends application logs with the real OpenTelemetry Python SDK for the log-pattern test: a warm-up
phase of two known message kinds, then (after a flush, so that it arrives after warm-up) a message kind
never seen before. Prints, as one JSON object, every line sent per kind, so that the Rust test can check
patterns, the one new-pattern event and the dedup counts against it."""

import argparse
import json
import logging
import sys

from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True, help="the agent's OTLP/HTTP base URL")
    p.add_argument("--run", required=True, help="a run id put on the resource")
    p.add_argument("--warmup", type=int, default=30, help="lines of each known kind")
    p.add_argument("--new", type=int, default=20, help="lines of the new kind")
    args = p.parse_args()

    resource = Resource.create({"service.name": "shop", "test.run": args.run})
    lp = LoggerProvider(resource=resource)
    lp.add_log_record_processor(
        BatchLogRecordProcessor(OTLPLogExporter(endpoint=args.endpoint.rstrip("/") + "/v1/logs"))
    )
    log = logging.getLogger("shop.checkout")
    log.setLevel(logging.INFO)
    log.propagate = False
    log.addHandler(LoggingHandler(level=logging.INFO, logger_provider=lp))

    sent = {"login": [], "cache": [], "payment": []}
    for i in range(args.warmup):
        line = f"user {1000 + i} logged in from 10.1.{i % 7}.{i + 3}"
        log.info(line)
        sent["login"].append(line)
        line = f"cache miss for key item-{i * 13} after {i + 2} ms"
        log.info(line)
        sent["cache"].append(line)
    # Everything above reaches the agent before the new kind does.
    if not lp.force_flush(30_000):
        sys.exit("warm-up logs were not flushed")

    for i in range(args.new):
        line = f"payment {90000 + i} declined by issuer bank{i % 3}.example.com code 51"
        log.error(line)
        sent["payment"].append(line)
    if not lp.force_flush(30_000):
        sys.exit("new-kind logs were not flushed")
    lp.shutdown()
    json.dump(sent, sys.stdout)


if __name__ == "__main__":
    main()
