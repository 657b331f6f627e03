#!/usr/bin/env bash
# The project's test command (README: `make test`). It starts a throwaway Redis
# and Keycloak (scripts/redis.sh, scripts/keycloak.sh), then runs, in order:
# gofmt, go vet, the unit tests and fuzz seed corpora with the race detector,
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
if [[ -z ${REDIS_TEST_URL:-} ]]; then
	scripts/redis.sh start
	started+=(redis)
	set -a; source .work/redis.env; set +a
fi
if [[ -z ${KEYCLOAK_TEST_URL:-} ]]; then
	scripts/keycloak.sh start
	started+=(keycloak)
	set -a; source .work/keycloak.env; set +a
fi

step "unit tests, fuzz seeds, race detector"
go test -race -count=1 ./...

step "integration tests: the runner binary over its unix socket, real Redis and Keycloak"
go test -race -count=1 -tags integration -timeout 15m ./test/integration/

step "the docker compose demo's routes (conf/apisix.yaml) through the runner against the demo realm"
DEMO_KEYCLOAK_URL=$KEYCLOAK_TEST_URL go test -race -count=1 -tags integration -run TestDemoStack ./test/deploy/
