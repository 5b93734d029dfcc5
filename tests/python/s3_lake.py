"""Checks what vigil's awss3 exporter wrote, with real clients: boto3 (the AWS SDK) lists and
reads the objects from a local S3 server, and DuckDB queries the OTLP JSON as a data-lake user
would. Prints one JSON object.

  create --endpoint URL --bucket B
  check  --endpoint URL --bucket B --dir D --json-prefix P --proto-prefix Q --file-prefix F
"""

import argparse
import gzip
import json
import os
import re
import sys

import boto3


def client(endpoint):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def spans_in_json(doc):
    return [
        (rs, s)
        for rs in doc.get("resourceSpans", [])
        for ss in rs.get("scopeSpans", [])
        for s in ss.get("spans", [])
    ]


def check(a):
    s3 = client(a.endpoint)
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=a.bucket):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    part = r"year=\d{4}/month=\d{2}/day=\d{2}/hour=\d{2}/minute=\d{2}"
    json_key = re.compile(rf"^{re.escape(a.json_prefix)}/{part}/{re.escape(a.file_prefix)}traces_[0-9a-f]{{16}}\.json\.gz$")
    proto_key = re.compile(rf"^{re.escape(a.proto_prefix)}/{part}/traces_[0-9a-f]{{16}}\.binpb$")
    out = {"objects": len(keys), "bad_keys": [], "json_spans": 0, "proto_spans": 0, "json_ids": [], "proto_ids": []}
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    for k in keys:
        body = s3.get_object(Bucket=a.bucket, Key=k)["Body"].read()
        if json_key.match(k):
            if body[:2] != b"\x1f\x8b":
                out["bad_keys"].append(k + " (not gzip)")
                continue
            path = os.path.join(a.dir, k)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(body)
            for line in gzip.decompress(body).decode().splitlines():
                if line.strip():
                    for _, s in spans_in_json(json.loads(line)):
                        out["json_spans"] += 1
                        out["json_ids"].append(s["traceId"] + "/" + s["spanId"])
        elif proto_key.match(k):
            req = ExportTraceServiceRequest()
            req.ParseFromString(body)
            for rs in req.resource_spans:
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        out["proto_spans"] += 1
                        out["proto_ids"].append(s.trace_id.hex() + "/" + s.span_id.hex())
        else:
            out["bad_keys"].append(k)
    out["json_ids"] = len(set(out["json_ids"]))
    out["proto_ids"] = len(set(out["proto_ids"]))
    if out["json_spans"]:
        try:
            out["duckdb"] = duck(a)
        except Exception as e:  # noqa: BLE001 - reported, so the test shows DuckDB's message
            out["duckdb"] = {"error": f"{type(e).__name__}: {e}"}
    print(json.dumps(out))


def duck(a):
    import duckdb

    con = duckdb.connect()
    # DuckDB reads s3:// through its httpfs extension, which it downloads on first use; without
    # network it cannot, and then it reads the same objects as boto3 downloaded them, keeping the
    # key layout (so hive partitioning works the same).
    source = "boto3 download + read_json"
    files = os.path.join(a.dir, a.json_prefix, "**", "*.json.gz")
    try:
        con.execute("INSTALL httpfs")
        con.execute("LOAD httpfs")
        host = a.endpoint.split("://", 1)[1]
        con.execute(f"SET s3_endpoint='{host}'")
        con.execute("SET s3_use_ssl=false")
        con.execute("SET s3_url_style='path'")
        con.execute("SET s3_region='us-east-1'")
        con.execute("SET s3_access_key_id='testing'")
        con.execute("SET s3_secret_access_key='testing'")
        files = f"s3://{a.bucket}/{a.json_prefix}/**/*.json.gz"
        source = "s3 via httpfs"
    except Exception:  # noqa: BLE001 - any failure means: no httpfs here
        pass
    rows = f"read_json('{files}', format='newline_delimited', hive_partitioning=true)"
    spans = f"""
        WITH r AS (SELECT year, unnest(resourceSpans) AS rs FROM {rows}),
             s AS (SELECT year, rs.resource.attributes AS attrs, unnest(rs.scopeSpans) AS ss FROM r),
             sp AS (SELECT year,
                           list_filter(attrs, lambda x: x.key = 'service.name')[1].value.stringValue AS service,
                           unnest(ss.spans) AS span FROM s)
        SELECT * FROM sp"""
    per_service = con.execute(
        f"SELECT service, count(*), count(DISTINCT span.traceId) FROM ({spans}) GROUP BY service ORDER BY service"
    ).fetchall()
    year = con.execute(f"SELECT max(year) FROM ({spans})").fetchone()[0]
    pruned = con.execute(f"SELECT count(*) FROM ({spans}) WHERE year = 1999").fetchone()[0]
    return {
        "source": source,
        "per_service": [[s, n, t] for s, n, t in per_service],
        "year": int(year) if year is not None else None,
        "spans_in_1999": pruned,
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["create", "check"])
    p.add_argument("--endpoint", required=True)
    p.add_argument("--bucket", required=True)
    p.add_argument("--dir")
    p.add_argument("--json-prefix")
    p.add_argument("--proto-prefix")
    p.add_argument("--file-prefix", default="")
    a = p.parse_args()
    if a.cmd == "create":
        client(a.endpoint).create_bucket(Bucket=a.bucket)
        print(json.dumps({"created": a.bucket}))
    else:
        check(a)


if __name__ == "__main__":
    sys.exit(main())
