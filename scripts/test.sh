#!/usr/bin/env bash
# The project's test command (README: `make test`). It starts a throwaway Redis
# and Keycloak (scripts/redis.sh, scripts/keycloak.sh), then runs, in order:
# gofmt, go vet, the unit tests and fuzz seed corpora with the race detector,
# the Python client's and the Django demo's pytest suites (scripts/python-tests.sh),
# the patched runner library's own tests (third_party/, a module of its own),
# and the integration tests that drive the real runner binary against them.
# Services it started are stopped on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

started=()
cleanup() {
	for s in "${started[@]}"; do
		"scripts/$s.sh" stop >/dev/null 2>&1 || true
	done
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }

step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' | grep -v '/testdata/') 2>&1 || true)
if [[ -n $unformatted ]]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

step "go vet"
go vet ./...
go vet -tags integration ./test/integration/ ./test/deploy/

step "services: Redis and Keycloak"
# A server already running from this checkout is reused and left running;
# one this script starts is stopped when it ends.
for service in redis keycloak; do
	var=REDIS_TEST_URL
	[[ $service == keycloak ]] && var=KEYCLOAK_TEST_URL
	[[ -n ${!var:-} ]] && continue
	if ! "scripts/$service.sh" status >/dev/null 2>&1; then
		"scripts/$service.sh" start
		started+=("$service")
	fi
	set -a; source ".work/$service.env"; set +a
done

step "unit tests, fuzz seeds, race detector"
go test -race -count=1 ./...

step "Python client and Django demo (clients/python, demo/django): shared vectors, Django test client, feed on the real Redis"
scripts/python-tests.sh
step "the patched runner library (third_party/apisix-go-plugin-runner, its own module): vet and tests"
(cd third_party/apisix-go-plugin-runner && go vet ./... && go test -race -count=1 ./...)

step "integration tests: the runner binary over its unix socket, real Redis and Keycloak"
go test -race -count=1 -tags integration -timeout 15m ./test/integration/

step "bench-e2e smoke: the benchmark tool runs end to end (-quick; it checks every answer, never the speed)"
go run ./test/bench -quick -out .work/bench-e2e-quick.md >/dev/null

step "the docker compose demo's routes (conf/apisix.yaml) through the runner against the demo realm"
DEMO_KEYCLOAK_URL=$KEYCLOAK_TEST_URL go test -race -count=1 -tags integration -run TestDemoStack ./test/deploy/
