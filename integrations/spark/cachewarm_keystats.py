"""cachewarm's per-key aggregation on Apache Spark: the access-event dataset in, key stats out.

The query is the analyzer's own (``analyzer aggregate-sql --dialect spark``), read from a file
or asked of the analyzer binary, run over the dataset registered as the view ``events``; the
result is the key-stats table (``schemas/json/key-stats.v1.schema.json``), written as Parquet
for ``analyzer rank --key-stats``::

    spark-submit cachewarm_keystats.py --data s3a://bucket/cachewarm/dataset \\
        --sql aggregate.sql --out s3a://bucket/cachewarm/key-stats --overwrite
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from pyspark.sql import SparkSession

# Spark writes timestamps as INT96 unless told otherwise; the key-stats table's instants are
# TIMESTAMP(MICROS) in UTC, as the analyzer's dataset's are.
REQUIRED_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the dataset written by `analyzer ingest`")
    parser.add_argument("--out", required=True, help="where to write the key-stats Parquet")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--sql", type=Path, help="a file holding `analyzer aggregate-sql` output")
    source.add_argument(
        "--analyzer", help="the analyzer binary to ask for the query (on the driver's PATH or a path)"
    )
    parser.add_argument("--half-life", help="passed to `analyzer aggregate-sql` (with --analyzer)")
    parser.add_argument(
        "--reference-time", help="passed to `analyzer aggregate-sql` (with --analyzer)"
    )
    parser.add_argument(
        "--approx-medians",
        action="store_true",
        help="passed to `analyzer aggregate-sql` (with --analyzer)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--master", help="the Spark master when not run by spark-submit")
    parser.add_argument(
        "--conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Spark setting, as spark-submit's --conf",
    )
    args = parser.parse_args(argv)
    if args.sql and (args.half_life or args.reference_time or args.approx_medians):
        parser.error("--half-life, --reference-time and --approx-medians go with --analyzer")
    return args


def aggregate_sql(args: argparse.Namespace) -> str:
    """The analyzer's query, from the file or the binary."""
    if args.sql:
        return str(args.sql.read_text(encoding="utf-8"))
    command = [args.analyzer, "aggregate-sql", "--dialect", "spark"]
    if args.half_life:
        command += ["--half-life", args.half_life]
    if args.reference_time:
        command += ["--reference-time", args.reference_time]
    if args.approx_medians:
        command.append("--approx-medians")
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def session(args: argparse.Namespace) -> SparkSession:
    builder = SparkSession.builder.appName("cachewarm-keystats")
    if args.master:
        builder = builder.master(args.master)
    for setting in args.conf:
        key, sep, value = setting.partition("=")
        if not sep:
            raise SystemExit(f"--conf {setting!r}: expected KEY=VALUE")
        builder = builder.config(key, value)
    for key, value in REQUIRED_CONF.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    query = aggregate_sql(args)
    spark = session(args)
    try:
        # Spark discovers the `date=` partitions (an extra column the query does not read) and
        # skips the ingest ledger and hidden temporary files (names starting with `_` or `.`).
        spark.read.parquet(args.data).createOrReplaceTempView("events")
        key_stats = spark.sql(query)
        key_stats.write.mode("overwrite" if args.overwrite else "errorifexists").parquet(args.out)
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
