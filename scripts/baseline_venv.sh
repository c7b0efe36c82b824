#!/usr/bin/env bash
# Creates target/baseline-venv with the pinned libraries scripts/baseline_consumer.py uses
# (boto3 + psycopg2, what a typical hand-written consumer imports). Safe to run again: an
# existing venv is only topped up, and pip skips what is already installed at these versions.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/baseline-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  boto3==1.44.8 psycopg2-binary==2.9.13
echo "$venv/bin/python"
