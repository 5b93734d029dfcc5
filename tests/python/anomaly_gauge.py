"""Sends one gauge series with an injected spike (or, with --step, a level step that stays) to an OTLP gRPC endpoint through the OpenTelemetry
Python SDK's own OTLP exporter. The points carry explicit timestamps (10 s apart, in the past), which
the SDK's instruments cannot set, so the MetricsData is built by hand and handed to the exporter: a few
hundred points of "time" then take a second to send, and the detector sees the same series every run.
Prints, as JSON, what it sent."""

import argparse
import json
import random
import sys
import time

from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics.export import (
    Gauge,
    Metric,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True, help="host:port of an OTLP gRPC receiver")
    p.add_argument("--points", type=int, default=300)
    p.add_argument("--spike-at", type=int, default=200)
    p.add_argument("--spike", type=float, default=0.97)
    p.add_argument("--step", type=float, default=None, help="add this to every point from --spike-at on, instead of a spike")
    p.add_argument("--metric", default="cpu.utilization")
    p.add_argument("--batch", type=int, default=50, help="points per export call")
    args = p.parse_args()

    rng = random.Random(42)
    step_ns = 10 * 1_000_000_000
    # Start far enough in the past that the last point is still before now.
    t0 = time.time_ns() - (args.points + 10) * step_ns
    values = [0.2 + rng.uniform(-0.02, 0.02) for _ in range(args.points)]
    if args.step is None:
        values[args.spike_at] = args.spike
    else:
        for i in range(args.spike_at, args.points):
            values[i] += args.step

    resource = Resource.create({"service.name": "anomaly-e2e", "host.name": "node-a"})
    scope = InstrumentationScope("vigil.e2e.anomaly")
    exporter = OTLPMetricExporter(endpoint=args.endpoint, insecure=True)
    for first in range(0, args.points, args.batch):
        points = [
            NumberDataPoint(
                attributes={"cpu": "0"},
                start_time_unix_nano=0,
                time_unix_nano=t0 + i * step_ns,
                value=values[i],
            )
            for i in range(first, min(first + args.batch, args.points))
        ]
        metric = Metric(
            name=args.metric,
            description="",
            unit="1",
            data=Gauge(data_points=points),
        )
        data = MetricsData(
            resource_metrics=[
                ResourceMetrics(
                    resource=resource,
                    scope_metrics=[ScopeMetrics(scope=scope, metrics=[metric], schema_url="")],
                    schema_url="",
                )
            ]
        )
        result = exporter.export(data)
        if result != MetricExportResult.SUCCESS:
            print(f"export of points {first}.. failed: {result}", file=sys.stderr)
            sys.exit(1)
    exporter.shutdown()
    json.dump(
        {
            "points": args.points,
            "spike_at": args.spike_at,
            "spike_time_unix_nano": t0 + args.spike_at * step_ns,
            "spike": args.spike,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
