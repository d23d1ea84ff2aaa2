#!/usr/bin/env bash
# Prepares kazoo 2.11.0's own test suite for a run against janus:
# a Python venv (system site packages, for Debian's python3-openssl) with
# the suite's test dependencies (kazoo's `test` extra), and kazoo's
# sdist unpacked (its tests and harness live only in the sdist).
#   conformance/kazoo/setup.sh [DIR]      (default: target/kazoo)
set -euo pipefail
cd "$(dirname "$0")/../.."
dir="${1:-${JANUS_KAZOO_DIR:-target/kazoo}}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
if [ ! -x "$dir/venv/bin/python" ]; then
  /usr/bin/python3 -m venv --system-site-packages "$dir/venv"
fi
"$dir/venv/bin/python" -c 'import jks, pytest, pytest_timeout, OpenSSL, objgraph, gevent, eventlet' 2>/dev/null ||
  "$dir/venv/bin/pip" install -q pyjks pytest pytest-timeout objgraph gevent eventlet
if [ ! -d "$dir/kazoo-2.11.0/kazoo/tests" ]; then
  for try in 1 2 3; do
    "$dir/venv/bin/pip" download -q --no-deps --no-binary :all: -d "$dir" kazoo==2.11.0 && break
    [ "$try" = 3 ] && exit 1
    sleep 2
  done
  tar -xzf "$dir/kazoo-2.11.0.tar.gz" -C "$dir"
fi
echo "kazoo suite ready in $dir"
