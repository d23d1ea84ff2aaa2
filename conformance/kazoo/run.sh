#!/usr/bin/env bash
# Runs kazoo 2.11.0's own test suite (or the pytest selection given) through
# kazoo's own 3-member harness, its `java` launch pointed at janus members
# (conformance/kazoo/bin/java). Needs conformance/kazoo/setup.sh first and a
# built janus (JANUS_BIN, default target/debug/janus).
#   conformance/kazoo/run.sh                      # the whole suite
#   conformance/kazoo/run.sh kazoo/tests/test_lock.py -k semaphore
# With JANUS_KAZOO_REFERENCE=1 the same runs against real ZooKeeper 3.8
# (Debian's jars), to tell janus failures from the suite's own.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dir="${JANUS_KAZOO_DIR:-$root/target/kazoo}"
[ -d "$dir/kazoo-2.11.0/kazoo/tests" ] || { echo "run $here/setup.sh first" >&2; exit 2; }
export JANUS_BIN="${JANUS_BIN:-$root/target/debug/janus}"
# The java hook converts the harness's JKS keystore with the venv's pyjks.
export JANUS_KAZOO_PYTHON="$dir/venv/bin/python"
export ZOOKEEPER_PATH=/usr/share/java ZOOKEEPER_VERSION=3.8.0
# kazoo's cluster takes 10 ports per member from this offset.
export ZOOKEEPER_PORT_OFFSET="${ZOOKEEPER_PORT_OFFSET:-$((20000 + RANDOM % 20000))}"
if [ "${JANUS_KAZOO_REFERENCE:-0}" != 1 ]; then
  export PATH="$here/bin:$PATH"
fi
cd "$dir/kazoo-2.11.0"
[ $# -gt 0 ] || set -- kazoo/tests
exec "$dir/venv/bin/python" -m pytest -q -p no:cacheprovider --timeout=120 -rfE "$@"
