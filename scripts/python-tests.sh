#!/usr/bin/env bash
# The Python side (scripts/test.sh runs it after the Go unit tests): a venv in
# .work/venv, the client package (clients/python) installed with its test
# extras at the versions of clients/python/constraints.txt, then pytest for
# the package (shared vectors, Django test client, feed consumer on the real
# Redis, feed command processes on a PostgreSQL server of their own) and for
# the Django demo (demo/django). Needs REDIS_TEST_URL and go.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

: "${REDIS_TEST_URL:?REDIS_TEST_URL must point at a Redis (scripts/redis.sh start)}"
VENV=${VENV:-$ROOT/.work/venv}

# The feed command's multi-process tests start their own PostgreSQL server (a temp dir, a free
# port, as the postgres user when run as root): they need the server binaries, Debian's package.
if ! command -v initdb >/dev/null 2>&1 && ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
	if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
	else
		echo "PostgreSQL's server binaries (initdb) are missing: install Debian's postgresql package" >&2
		exit 1
	fi
fi

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

# The oldest Django the package supports, in a venv of its own: the same pins but Django's and
# DRF's (clients/python/constraints-oldest-django.txt). The long multi-process feed test is left to the
# run above: what it proves does not depend on Django's version (~40 s of CI time saved).
OLDEST_VENV=${OLDEST_VENV:-$ROOT/.work/venv-django-oldest}
if ! "$OLDEST_VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
	python3 -m venv "$OLDEST_VENV"
fi
oldest_constraints=$(mktemp)
trap 'rm -f "$oldest_constraints"' EXIT
oldest_pins=clients/python/constraints-oldest-django.txt
# constraints.txt without the packages the oldest pins name, then those pins.
grep -v -i -E "^($(grep -v '^#' "$oldest_pins" | cut -d= -f1 | paste -sd'|'))==" clients/python/constraints.txt \
	| cat - "$oldest_pins" >"$oldest_constraints"
"$OLDEST_VENV/bin/python" -m pip install -q --disable-pip-version-check \
	-c "$oldest_constraints" "./clients/python[test]"
"$OLDEST_VENV/bin/python" -c 'import django, rest_framework as r; print(f"clients/python on Django {django.get_version()}, DRF {r.__version__}")'
(cd clients/python && "$OLDEST_VENV/bin/python" -m pytest -q -p no:cacheprovider -k 'not concurrent_consumers')
