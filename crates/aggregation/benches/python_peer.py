"""The Python side of `cargo bench -p chief-aggregation`: aggregates and deaggregates the
same user records with the official `aws_kinesis_agg` and prints the timings as JSON.

usage: python_peer.py RECORDS_FILE MAX_SIZE REPEATS

RECORDS_FILE holds the records the Rust side generated, each as
u8 partition key length, partition key (UTF-8), u32 LE data length, data.
"""

import json
import struct
import sys
import time

from aws_kinesis_agg.aggregator import RecordAggregator
from aws_kinesis_agg.deaggregator import iter_deaggregate_records


def read_records(path):
    with open(path, "rb") as f:
        blob = f.read()
    records = []
    pos = 0
    while pos < len(blob):
        key_len = blob[pos]
        pos += 1
        key = blob[pos : pos + key_len].decode("utf-8")
        pos += key_len
        (data_len,) = struct.unpack_from("<I", blob, pos)
        pos += 4
        records.append((key, blob[pos : pos + data_len]))
        pos += data_len
    return records


def aggregate(records, max_size):
    aggregator = RecordAggregator(max_size=max_size)
    out = []
    for key, data in records:
        full = aggregator.add_user_record(key, data)
        if full is not None:
            out.append(full.get_contents())
    last = aggregator.clear_and_get()
    if last is not None:
        out.append(last.get_contents())
    return out


def deaggregate(kinesis_records):
    count = 0
    for _user_record in iter_deaggregate_records(kinesis_records, data_format="Boto3"):
        count += 1
    return count


def main():
    path, max_size, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    records = read_records(path)

    best_aggregate = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        aggregated = aggregate(records, max_size)
        best_aggregate = min(best_aggregate, time.perf_counter() - start)

    # The Boto3 record shape: raw bytes, no base64 on the way in (the cheapest input).
    kinesis_records = [
        {
            "SequenceNumber": "1",
            "PartitionKey": pk,
            "ApproximateArrivalTimestamp": 0,
            "Data": data,
        }
        for pk, _ehk, data in aggregated
    ]
    best_deaggregate = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        count = deaggregate(kinesis_records)
        best_deaggregate = min(best_deaggregate, time.perf_counter() - start)
    if count != len(records):
        sys.exit("deaggregated %d user records, expected %d" % (count, len(records)))

    print(
        json.dumps(
            {
                "aggregate_seconds": best_aggregate,
                "deaggregate_seconds": best_deaggregate,
                "kinesis_records": len(aggregated),
                "aggregate_bytes": sum(len(data) for _pk, _ehk, data in aggregated),
            }
        )
    )


if __name__ == "__main__":
    main()
