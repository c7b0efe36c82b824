#!/usr/bin/env python3
"""The consumer most take-home answers to this job write, as a baseline for `just bench`.

boto3 + psycopg2: receive ten messages, and for each one parse it, mask ip and device_id with
hashlib.sha256().hexdigest(), turn app_version into an int by dropping the dots, INSERT and
COMMIT it on its own, delete it with delete_message. Malformed messages are skipped and deleted,
as those answers do (they are counted, not kept). Stops after three empty receives in a row.
None of masq's guarantees: a crash between COMMIT and delete writes a row twice.

Run it with the venv from scripts/baseline_venv.sh:
  target/baseline-venv/bin/python scripts/baseline_consumer.py \
      --queue-url URL --database-url postgres://... --table user_logins

Prints one JSON line: {"messages": n, "written": w, "skipped": s, "seconds": t, "per_second": r,
"seconds_total": T}: seconds from the first receive to the last delete (what per_second uses),
and to the end of the three empty receives.
AWS settings come from the usual environment (AWS_ENDPOINT_URL, AWS_REGION, credentials).
"""

import argparse
import hashlib
import json
import os
import time

import boto3
import psycopg2


def mask(value):
    return hashlib.sha256(value.encode()).hexdigest()


def transform(body):
    """The row for a message, or None if it is malformed."""
    try:
        msg = json.loads(body)
        return (
            msg["user_id"],
            msg["device_type"],
            mask(msg["ip"]),
            mask(msg["device_id"]),
            msg["locale"],
            int(msg["app_version"].replace(".", "")),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--queue-url", required=True)
    p.add_argument("--database-url", required=True)
    p.add_argument("--table", default="user_logins")
    args = p.parse_args()

    # boto3 reads AWS_DEFAULT_REGION, not the AWS_REGION the Rust SDK and masq use.
    sqs = boto3.client("sqs", region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))
    db = psycopg2.connect(args.database_url)
    cur = db.cursor()
    insert = (
        f"INSERT INTO {args.table} (user_id, device_type, masked_ip, masked_device_id, locale, app_version, "
        "create_date) VALUES (%s, %s, %s, %s, %s, %s, CURRENT_DATE)"
    )

    messages = written = skipped = 0
    empty = 0
    started = last = time.monotonic()
    while empty < 3:
        out = sqs.receive_message(QueueUrl=args.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        batch = out.get("Messages", [])
        if not batch:
            empty += 1
            continue
        empty = 0
        for m in batch:
            messages += 1
            row = transform(m["Body"])
            if row is None:
                skipped += 1
            else:
                cur.execute(insert, row)
                db.commit()
                written += 1
            sqs.delete_message(QueueUrl=args.queue_url, ReceiptHandle=m["ReceiptHandle"])
        last = time.monotonic()
    seconds = max(last - started, 1e-9)
    print(json.dumps({"messages": messages, "written": written, "skipped": skipped,
                      "seconds": round(seconds, 3), "per_second": round(messages / seconds, 1),
                      "seconds_total": round(time.monotonic() - started, 3)}))


if __name__ == "__main__":
    main()
