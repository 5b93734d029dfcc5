"""One service of vigil's test application: a Flask app instrumented with the stock OpenTelemetry SDK.

The application (tests/tests/real_app.rs starts it) is a few of these processes calling each other:

    load → frontend → checkout → inventory → SQLite (inventory.db)
                               → payments  → SQLite (payments.db)

Each process has its own tracer and meter provider, exports over OTLP/HTTP with the SDK's own batching
(`--export-ms`, time-compressed from the SDK's 5 s), and propagates trace context through the
`requests` instrumentation. A fault switch, `POST /_fault` with `{"kind": ..., "ms": ..., "ratio": ...}`,
makes the service slow (`latency`), fail (`errors`), or its database slow (`slowdb`); `{"kind": "none"}`
heals it. The switch itself is not traced.

Usage: service.py --name NAME --port PORT --otlp http://127.0.0.1:4318 [--call URL]... [--db PATH]
"""

import argparse
import logging
import random
import sqlite3
import threading
import time

import requests
from flask import Flask, jsonify, request
from opentelemetry import metrics, trace
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

FAULT = {"kind": "none", "ms": 0.0, "ratio": 0.0}
LOCK = threading.Lock()


def fault():
    with LOCK:
        return dict(FAULT)


def setup_telemetry(name, otlp, export_ms):
    resource = Resource.create({"service.name": name, "host.name": "node-1"})
    tp = TracerProvider(resource=resource)
    tp.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(endpoint=f"{otlp}/v1/traces", timeout=5),
            schedule_delay_millis=export_ms,
            max_export_batch_size=2048,
        )
    )
    trace.set_tracer_provider(tp)
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"{otlp}/v1/metrics", timeout=5),
        export_interval_millis=export_ms,
    )
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))
    return tp


def open_db(path):
    # The instrumentation wraps sqlite3.connect, so connections are opened after instrument().
    conn = sqlite3.connect(path, timeout=10)
    # Readers do not block the writer (nor it them) in WAL mode.
    conn.execute("PRAGMA journal_mode=WAL")
    # A SQL function the slow-database fault calls, so that the slowness is inside the traced query.
    conn.create_function("pause_ms", 1, lambda ms: time.sleep(ms / 1000.0) or 0)
    conn.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, qty INTEGER)")
    conn.executemany(
        "INSERT OR REPLACE INTO items (id, qty) VALUES (?, ?)", [(i, 100) for i in range(50)]
    )
    conn.commit()
    return conn


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--otlp", required=True)
    ap.add_argument("--call", action="append", default=[])
    ap.add_argument("--db")
    ap.add_argument("--work-ms", type=float, default=2.0)
    ap.add_argument("--export-ms", type=int, default=1000)
    args = ap.parse_args()

    tp = setup_telemetry(args.name, args.otlp, args.export_ms)
    RequestsInstrumentor().instrument()
    SQLite3Instrumentor().instrument()
    app = Flask(args.name)
    FlaskInstrumentor().instrument_app(app, excluded_urls="_fault,_ready")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    if args.db:
        open_db(args.db).close()
    # One connection per thread: reads run side by side, as on a database server, so that a slow
    # query slows requests without queueing every later one behind it (a saturated single
    # connection never recovered within the test's recovery time).
    local = threading.local()

    def db():
        if not hasattr(local, "conn"):
            local.conn = open_db(args.db)
        return local.conn

    write_lock = threading.Lock()
    session = requests.Session()

    @app.post("/_fault")
    def set_fault():
        body = request.get_json(force=True, silent=True) or {}
        with LOCK:
            FAULT["kind"] = str(body.get("kind", "none"))
            FAULT["ms"] = float(body.get("ms", 0))
            FAULT["ratio"] = float(body.get("ratio", 0))
        return jsonify(fault())

    @app.get("/_ready")
    def ready():
        return "ok"

    @app.get("/work")
    def work():
        f = fault()
        # Some natural variation of the service's own time.
        time.sleep(random.uniform(0.5, 1.5) * args.work_ms / 1000.0)
        if f["kind"] == "latency":
            time.sleep(random.uniform(0.8, 1.2) * f["ms"] / 1000.0)
        if args.db:
            pause = f["ms"] * random.uniform(0.8, 1.2) if f["kind"] == "slowdb" else 0.0
            conn = db()
            item = random.randrange(50)
            # Through a cursor: the instrumentation traces cursor calls, not the connection's shortcuts.
            cur = conn.cursor()
            cur.execute("SELECT qty, pause_ms(?) FROM items WHERE id = ?", (pause, item))
            cur.fetchone()
            with write_lock:
                cur.execute("UPDATE items SET qty = qty WHERE id = ?", (item,))
                conn.commit()
        for url in args.call:
            r = session.get(url, timeout=10)
            if r.status_code >= 500:
                return "upstream failed", 502
        if f["kind"] == "errors" and random.random() < f["ratio"]:
            return "injected failure", 500
        return "ok"

    try:
        app.run(host="127.0.0.1", port=args.port, threaded=True)
    finally:
        tp.shutdown()


if __name__ == "__main__":
    main()
