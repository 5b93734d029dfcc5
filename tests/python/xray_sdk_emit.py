"""Emits one trace with the AWS X-Ray SDK for Python (aws-xray-sdk), as an application instrumented
with X-Ray would: the SDK sends its segment documents over UDP to the daemon address given (vigil's
`awsxray` receiver). Prints one JSON object with the ids the SDK chose, for the test to find them.

  xray_sdk_emit.py HOST:PORT [--stream]

With --stream the SDK sends each finished subsegment as a document of its own (streaming_threshold 1,
as it does when a segment grows past its threshold) and the segment last.

The trace: a server segment `checkout` (GET, answered 500: a fault) with an annotation and
metadata, and three subsegments: `db` (SQL), `payments.example.com` (a remote call answered 404:
an error) and `render`, which raised an exception (a cause with a stack).
"""

import json
import sys

from aws_xray_sdk.core import xray_recorder
from aws_xray_sdk.core.utils import stacktrace


def main():
    xray_recorder.configure(
        daemon_address=sys.argv[1],
        sampling=False,
        context_missing="LOG_ERROR",
        service="checkout",
        plugins=(),
        streaming_threshold=1 if "--stream" in sys.argv[2:] else 30,
    )
    seg = xray_recorder.begin_segment("checkout")
    seg.put_http_meta("method", "GET")
    seg.put_http_meta("url", "http://shop.example.com/cart?id=7")
    seg.put_http_meta("user_agent", "curl/8.0")
    seg.put_http_meta("client_ip", "10.1.2.3")
    seg.put_annotation("customer", "c-42")
    seg.put_annotation("items", 3)
    seg.put_metadata("cart", {"sku": ["a", "b"]}, "shop")

    db = xray_recorder.begin_subsegment("db")
    db.set_sql({"url": "postgresql://db.example.com:5432/orders", "database_type": "PostgreSQL",
                "sanitized_query": "SELECT * FROM cart WHERE id = $1", "user": "app"})
    xray_recorder.end_subsegment()

    remote = xray_recorder.begin_subsegment("payments.example.com", "remote")
    remote.put_http_meta("method", "POST")
    remote.put_http_meta("url", "http://payments.example.com/charge")
    remote.put_http_meta("status", 404)
    xray_recorder.end_subsegment()

    render = xray_recorder.begin_subsegment("render")
    try:
        raise ValueError("template missing")
    except ValueError as e:
        render.add_exception(e, stacktrace.get_stacktrace(limit=10))
    xray_recorder.end_subsegment()

    seg.put_http_meta("status", 500)
    ids = {
        "trace_id": seg.trace_id,
        "segment": seg.id,
        "db": db.id,
        "remote": remote.id,
        "render": render.id,
    }
    xray_recorder.end_segment()
    print(json.dumps(ids))


if __name__ == "__main__":
    main()
