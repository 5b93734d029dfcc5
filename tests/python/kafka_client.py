"""An independent Kafka client for vigil's kafka tests: confluent-kafka (librdkafka as PyPI ships it)
with the OpenTelemetry protobuf classes. It creates topics, produces OTLP messages for vigil's
receiver, and reads back and decodes what vigil's exporter wrote. Prints one JSON object."""

import argparse
import json
import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

REQUESTS = {
    "traces": ExportTraceServiceRequest,
    "metrics": ExportMetricsServiceRequest,
    "logs": ExportLogsServiceRequest,
}


def client_conf(args, **extra):
    """librdkafka settings shared by every client: the brokers and, with --sasl MECHANISM:USER:PASSWORD,
    SASL over plaintext."""
    conf = {"bootstrap.servers": args.brokers}
    if args.sasl:
        mech, user, password = args.sasl.split(":", 2)
        conf.update({"security.protocol": "sasl_plaintext", "sasl.mechanism": mech,
                     "sasl.username": user, "sasl.password": password})
    conf.update(extra)
    return conf


def create_topic(args):
    admin = AdminClient(client_conf(args))
    futures = admin.create_topics([NewTopic(args.topic, num_partitions=args.partitions, replication_factor=1)])
    for _, f in futures.items():
        try:
            f.result(timeout=30)
        except Exception as e:  # an existing topic is fine: the tests create each once
            if "TOPIC_ALREADY_EXISTS" not in str(e):
                raise
    md = admin.list_topics(args.topic, timeout=30)
    return {"partitions": len(md.topics[args.topic].partitions)}


def items_of(signal, req):
    """Names of the spans or bodies of the log records in a request, and their trace ids."""
    names, traces = [], []
    if signal == "traces":
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                for s in ss.spans:
                    names.append(s.name)
                    traces.append(s.trace_id.hex())
    elif signal == "logs":
        for rl in req.resource_logs:
            for sl in rl.scope_logs:
                for r in sl.log_records:
                    names.append(r.body.string_value)
                    if any(r.trace_id):
                        traces.append(r.trace_id.hex())
    else:
        for rm in req.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    names.append(m.name)
    return names, traces


def consume(args):
    c = Consumer(client_conf(args, **{"group.id": args.group, "auto.offset.reset": "earliest", "enable.auto.commit": False}))
    c.subscribe([args.topic])
    out = []
    items = 0
    deadline = time.monotonic() + args.timeout
    while items < args.items and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() != KafkaError._PARTITION_EOF:
                print(f"consumer error: {m.error()}", file=sys.stderr)
            continue
        value = m.value() or b""
        if args.encoding == "otlp_json":
            req = json_format.Parse(value.decode(), REQUESTS[args.signal]())
        elif args.encoding == "raw":
            req = None
        else:
            req = REQUESTS[args.signal]()
            req.ParseFromString(value)
        names, traces = items_of(args.signal, req) if req is not None else ([value.decode(errors="replace")], [])
        items += len(names)
        key = m.key()
        out.append(
            {
                "partition": m.partition(),
                "offset": m.offset(),
                "key": key.decode(errors="replace") if key is not None else None,
                "bytes": len(value),
                "names": names,
                "trace_ids": sorted(set(traces)),
                "headers": [[k, v.decode(errors="replace") if v is not None else None] for k, v in (m.headers() or [])],
            }
        )
    c.close()
    return {"messages": out, "items": items}


def trace_request(first, n, trace):
    spans = []
    for i in range(first, first + n):
        spans.append(
            Span(
                trace_id=bytes([trace % 255 + 1]) * 16,
                span_id=(i + 1).to_bytes(8, "big"),
                name=f"span-{i}",
                kind=Span.SPAN_KIND_SERVER,
                start_time_unix_nano=1_700_000_000_000_000_000 + i,
                end_time_unix_nano=1_700_000_000_000_500_000 + i,
            )
        )
    res = Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value="kafka-producer"))])
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(resource=res, scope_spans=[ScopeSpans(spans=spans)])])


def log_request(first, n):
    recs = [LogRecord(body=AnyValue(string_value=f"line-{i}"), severity_number=9) for i in range(first, first + n)]
    return ExportLogsServiceRequest(resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=recs)])])


def produce(args):
    p = Producer(client_conf(args, **{"linger.ms": 5, "message.timeout.ms": int(args.timeout * 1000)}))
    failed = []

    def report(err, _msg):
        if err is not None:
            failed.append(str(err))

    for m in range(args.messages):
        first = args.first + m * args.per_message
        if args.signal == "traces":
            req = trace_request(first, args.per_message, m)
        else:
            req = log_request(first, args.per_message)
        if args.encoding == "otlp_json":
            value = json_format.MessageToJson(req).encode()
        elif args.encoding == "raw":
            value = f"line-{first}".encode()
        else:
            value = req.SerializeToString()
        headers = [("tenant", b"team-a")] if args.header else None
        p.produce(args.topic, value=value, headers=headers, on_delivery=report)
        p.poll(0)
    left = p.flush(args.timeout + 5)
    if left or failed:
        raise SystemExit(f"produce failed: {left} undelivered, errors {failed[:3]}")
    return {"produced": args.messages}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["create-topic", "consume", "produce"])
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--signal", default="traces", choices=sorted(REQUESTS))
    ap.add_argument("--encoding", default="otlp_proto", choices=["otlp_proto", "otlp_json", "raw"])
    ap.add_argument("--group", default="vigil-test-reader")
    ap.add_argument("--items", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--messages", type=int, default=1)
    ap.add_argument("--per-message", type=int, default=1)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--header", action="store_true")
    ap.add_argument("--sasl", default="", help="MECHANISM:USER:PASSWORD")
    args = ap.parse_args()
    run = {"create-topic": create_topic, "consume": consume, "produce": produce}[args.command]
    print(json.dumps(run(args)))


if __name__ == "__main__":
    main()
