"""Send → S3 latency of `chiefctl probe` orders, for `make bench`.

For every probe in the sent log (`{"orderid", "sent_unix_ms"}` lines), finds the S3 object
under PREFIX whose rows hold its orderid and takes the object's LastModified (whole seconds
in the emulator, so ±1 s) minus the send time. Prints one JSON line: probes, found,
latency_ms_p50, latency_ms_p99, latency_ms_max.

usage: s3_latency.py ENDPOINT BUCKET PREFIX SENT_LOG
"""

import json
import sys

import boto3


def main() -> int:
    endpoint, bucket, prefix, sent_log = sys.argv[1:5]
    sent = {}
    with open(sent_log, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                probe = json.loads(line)
                sent[probe["orderid"]] = probe["sent_unix_ms"]
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="chief-local",
        aws_secret_access_key="chief-local",
    )
    latencies = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            written_ms = obj["LastModified"].timestamp() * 1000
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            for row in body.split(b"\n"):
                orderid = row.split(b"\t", 1)[0].decode("utf-8", "replace")
                if orderid in sent:
                    latencies.append(max(0, round(written_ms - sent.pop(orderid))))
    latencies.sort()

    def quantile(q):
        if not latencies:
            return None
        return latencies[min(len(latencies) - 1, int(len(latencies) * q))]

    print(
        json.dumps(
            {
                "probes": len(latencies) + len(sent),
                "found": len(latencies),
                "latency_ms_p50": quantile(0.5),
                "latency_ms_p99": quantile(0.99),
                "latency_ms_max": latencies[-1] if latencies else None,
            }
        )
    )
    return 0 if not sent else 1


if __name__ == "__main__":
    sys.exit(main())
