"""Sends application logs with the real OpenTelemetry Python SDK for the awscloudwatchlogs test:
`--logs` records in `--flushes` exports (so the agent gets several batches), each with its sequence
number as the attribute `seq`. Prints, as one JSON object, the bodies it sent in order."""

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
    p.add_argument("--logs", type=int, default=120)
    p.add_argument("--flushes", type=int, default=3)
    args = p.parse_args()

    lp = LoggerProvider(resource=Resource.create({"service.name": "shop"}))
    lp.add_log_record_processor(
        BatchLogRecordProcessor(OTLPLogExporter(endpoint=args.endpoint.rstrip("/") + "/v1/logs"))
    )
    log = logging.getLogger("shop.orders")
    log.setLevel(logging.INFO)
    log.propagate = False
    log.addHandler(LoggingHandler(level=logging.INFO, logger_provider=lp))

    sent = []
    per_flush = max(1, args.logs // args.flushes)
    for i in range(args.logs):
        line = f"order {i} placed"
        log.info(line, extra={"seq": i})
        sent.append(line)
        if (i + 1) % per_flush == 0 and not lp.force_flush(30_000):
            sys.exit("logs were not flushed")
    if not lp.force_flush(30_000):
        sys.exit("logs were not flushed")
    lp.shutdown()
    json.dump({"sent": sent}, sys.stdout)


if __name__ == "__main__":
    main()
