"""The Python peer of `chiefctl agg pack|unpack` for `cargo bench -p chiefctl --bench agg_cli`:
the same command over the official `aws_kinesis_agg`, JSON lines on stdin and stdout in
the same shapes, written the plain way a user of that library would write it.

usage: agg_cli_peer.py pack MAX_SIZE < user-records.jsonl > kinesis-records.jsonl
       agg_cli_peer.py unpack < kinesis-records.jsonl > user-records.jsonl
"""

import base64
import json
import sys

from aws_kinesis_agg.aggregator import RecordAggregator
from aws_kinesis_agg.deaggregator import iter_deaggregate_records


def pack(max_size, lines, out):
    aggregator = RecordAggregator(max_size=max_size)

    def emit(agg):
        pk, ehk, data = agg.get_contents()
        line = {"partition_key": pk}
        if ehk is not None:
            line["explicit_hash_key"] = ehk
        line["data"] = base64.b64encode(data).decode("ascii")
        line["user_records"] = agg.get_num_user_records()
        out.write(json.dumps(line, separators=(",", ":")))
        out.write("\n")

    for line in lines:
        if not line.strip():
            continue
        record = json.loads(line)
        full = aggregator.add_user_record(
            record["partition_key"], base64.b64decode(record["data"], validate=True),
            record.get("explicit_hash_key"))
        if full is not None:
            emit(full)
    last = aggregator.clear_and_get()
    if last is not None:
        emit(last)


def unpack(lines, out):
    def records():
        for line in lines:
            if not line.strip():
                continue
            record = json.loads(line)
            yield {"SequenceNumber": "1", "PartitionKey": record["partition_key"],
                   "ApproximateArrivalTimestamp": 0,
                   "Data": base64.b64decode(record["data"], validate=True)}

    # The library hands user records back Lambda-shaped, their data already base64.
    for sub in iter_deaggregate_records(records(), data_format="Boto3"):
        sub = sub["kinesis"]
        line = {"partition_key": sub["partitionKey"]}
        if sub.get("explicitHashKey") is not None:
            line["explicit_hash_key"] = sub["explicitHashKey"]
        data = sub["data"]
        line["data"] = data.decode("ascii") if isinstance(data, bytes) else data
        line["sub_sequence_number"] = sub.get("subSequenceNumber", 0)
        out.write(json.dumps(line, separators=(",", ":")))
        out.write("\n")


def main():
    out = sys.stdout
    if sys.argv[1] == "pack":
        pack(int(sys.argv[2]), sys.stdin, out)
    elif sys.argv[1] == "unpack":
        unpack(sys.stdin, out)
    else:
        sys.exit("usage: agg_cli_peer.py pack MAX_SIZE | unpack")
    out.flush()


if __name__ == "__main__":
    main()
