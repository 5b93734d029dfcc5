"""Reads back what vigil's awsemf and awsxray exporters (and the awsproxy extension) stored in a
local AWS server (moto_server), with boto3, the AWS SDK. Prints one JSON object.

  logs   --endpoint URL --group G --stream S   the events of a log stream (messages as JSON)
  traces --endpoint URL --ids ID,ID            the segment documents of X-Ray traces
"""

import argparse
import json

import boto3


def client(service, endpoint):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def logs(a):
    cw = client("logs", a.endpoint)
    groups = [g["logGroupName"] for g in cw.describe_log_groups()["logGroups"]]
    out = {"groups": groups, "events": [], "retention": None}
    for g in cw.describe_log_groups()["logGroups"]:
        if g["logGroupName"] == a.group:
            out["retention"] = g.get("retentionInDays")
    if a.group in groups:
        streams = [s["logStreamName"] for s in cw.describe_log_streams(logGroupName=a.group)["logStreams"]]
        out["streams"] = streams
        if a.stream in streams:
            events = cw.get_log_events(logGroupName=a.group, logStreamName=a.stream, startFromHead=True)["events"]
            out["events"] = [json.loads(e["message"]) for e in events]
    print(json.dumps(out))


def traces(a):
    xr = client("xray", a.endpoint)
    ids = [i for i in a.ids.split(",") if i]
    found = xr.batch_get_traces(TraceIds=ids)
    segments = [json.loads(s["Document"]) for t in found["Traces"] for s in t["Segments"]]
    print(json.dumps({"segments": segments, "unprocessed": found.get("UnprocessedTraceIds", [])}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["logs", "traces"])
    p.add_argument("--endpoint", required=True)
    p.add_argument("--group", default="")
    p.add_argument("--stream", default="")
    p.add_argument("--ids", default="")
    a = p.parse_args()
    {"logs": logs, "traces": traces}[a.what](a)


if __name__ == "__main__":
    main()
