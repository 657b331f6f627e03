#!/usr/bin/env bash
# The Python side (scripts/test.sh runs it after the Go unit tests): a venv in
# .work/venv, the client package (clients/python) installed with its test
# extras at the versions of clients/python/constraints.txt, then pytest for
# the package (shared vectors, Django test client, feed consumer on the real
# Redis) and for the Django demo (demo/django). Needs REDIS_TEST_URL and go.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

: "${REDIS_TEST_URL:?REDIS_TEST_URL must point at a Redis (scripts/redis.sh start)}"
VENV=${VENV:-$ROOT/.work/venv}

if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
	python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check \
	-c clients/python/constraints.txt "./clients/python[test]"

# pytest exits 5 when it collected no test: that is a failure here, as is
# any other non-zero exit.
run_pytest() {
	local dir=$1 rc=0
	(cd "$dir" && "$VENV/bin/python" -m pytest -q -p no:cacheprovider) || rc=$?
	if ((rc == 5)); then
		echo "pytest in $dir collected no test" >&2
	fi
	return "$rc"
}

run_pytest clients/python
run_pytest demo/django
