"""The official Python KPL aggregation library (PyPI `aws-kinesis-agg`) as a peer for
chief-aggregation's interop tests and benchmark.

JSON lines on stdin/stdout, data in base64, the same shapes as `chiefctl agg`:

  peer.py aggregate [--max-size N]
      in:  {"partition_key", "explicit_hash_key" (optional), "data"}      (user records)
      out: {"partition_key", "explicit_hash_key" (or null), "data", "user_records"}
  peer.py deaggregate
      in:  {"partition_key", "data"}                                        (Kinesis records)
      out: {"partition_key", "explicit_hash_key" (or null), "data", "sub_sequence_number",
            "aggregated"}
"""

import argparse
import base64
import json
import sys

import aws_kinesis_agg
from aws_kinesis_agg.aggregator import RecordAggregator
from aws_kinesis_agg.deaggregator import iter_deaggregate_records


def emit_aggregate(agg_record, out):
    partition_key, explicit_hash_key, data = agg_record.get_contents()
    out.write(
        json.dumps(
            {
                "partition_key": partition_key,
                "explicit_hash_key": explicit_hash_key,
                "data": base64.b64encode(data).decode("ascii"),
                "user_records": agg_record.get_num_user_records(),
            }
        )
        + "\n"
    )


def aggregate(max_size):
    aggregator = RecordAggregator(max_size=max_size)
    out = sys.stdout
    for line in sys.stdin:
        record = json.loads(line)
        full = aggregator.add_user_record(
            record["partition_key"],
            base64.b64decode(record["data"]),
            record.get("explicit_hash_key"),
        )
        if full is not None:
            emit_aggregate(full, out)
    last = aggregator.clear_and_get()
    if last is not None:
        emit_aggregate(last, out)


def deaggregate():
    out = sys.stdout
    for line in sys.stdin:
        record = json.loads(line)
        # The Lambda event shape, which is what the library reads.
        event_record = {
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "sequenceNumber": "1",
                "approximateArrivalTimestamp": 0,
                "partitionKey": record["partition_key"],
                "data": record["data"],
            }
        }
        for user_record in iter_deaggregate_records([event_record]):
            kinesis = user_record["kinesis"]
            data = kinesis["data"]
            if isinstance(data, bytes):
                data = data.decode("ascii")
            out.write(
                json.dumps(
                    {
                        "partition_key": kinesis["partitionKey"],
                        "explicit_hash_key": kinesis.get("explicitHashKey"),
                        "data": data,
                        "sub_sequence_number": kinesis.get("subSequenceNumber", 0),
                        "aggregated": kinesis.get("aggregated", False),
                    }
                )
                + "\n"
            )


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    agg = sub.add_parser("aggregate")
    agg.add_argument("--max-size", type=int, default=aws_kinesis_agg.MAX_BYTES_PER_RECORD)
    sub.add_parser("deaggregate")
    args = parser.parse_args()
    if args.command == "aggregate":
        aggregate(args.max_size)
    else:
        deaggregate()


if __name__ == "__main__":
    main()
