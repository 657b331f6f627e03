#!/usr/bin/env bash
# The project's test command (README: `make test`). It starts a throwaway Redis
# and Keycloak (scripts/redis.sh, scripts/keycloak.sh), then runs, in order:
# gofmt, go vet, the unit tests and fuzz seed corpora with the race detector,
# the Python client's and the Django demo's pytest suites (scripts/python-tests.sh,
# in the background beside the integration tests),
# the patched runner library's own tests (third_party/, a module of its own),
# the integration tests that drive the real runner binary against them, and a
# one-minute soak of 500 users (make reliability runs the full one);
# go mod tidy must have nothing to change. test/deploy and deploy/alerts (the
# alert rules through Prometheus' rule engine) are modules of their own. Work
# that needs no service and is mostly compiling (the alert rules, make release)
# runs in the background at the lowest priority from the start.
# Services it started are stopped on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

started=()
# Jobs run in the background (background, wait_background): pid and log file
# by name; a job still running when the script exits is killed.
declare -A BG_PID=() BG_LOG=()
cleanup() {
	local pid
	for pid in "${BG_PID[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for s in "${started[@]}"; do
		"scripts/$s.sh" stop >/dev/null 2>&1 || true
	done
}
trap cleanup EXIT

step() { printf '\n== %s (%s)\n' "$*" "$(date +%T)"; }

# background NAME COMMAND...: run COMMAND in the background, its output kept
# in .work/NAME.log until wait_background shows it.
background() {
	local name=$1
	shift
	mkdir -p "$ROOT/.work"
	BG_LOG[$name]=$ROOT/.work/$name.log
	"$@" >"${BG_LOG[$name]}" 2>&1 &
	BG_PID[$name]=$!
}

# wait_background NAME WHAT: wait for NAME's job and show its output; when it
# failed, say WHAT failed and exit.
wait_background() {
	local name=$1 what=$2
	if ! wait "${BG_PID[$name]}"; then
		cat "${BG_LOG[$name]}"; echo "$what failed (output above)"; exit 1
	fi
	unset "BG_PID[$name]"
	cat "${BG_LOG[$name]}"
}

step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' | grep -v '/testdata/') 2>&1 || true)
if [[ -n $unformatted ]]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

# deploy/alerts, the alert rules through Prometheus' rule engine, is a module
# of its own whose first build is long (337 packages, 4-6 minutes on 2 cores
# with a cold cache) and needs nothing the rest needs: it runs from here, in
# the background at the lowest priority so it takes only CPU the rest leaves
# idle (the integration tests wait on Keycloak and Redis much of the time),
# and is waited for at the end.
alert_rules() {
	cd deploy/alerts
	nice -n 19 go mod tidy -diff && nice -n 19 go vet ./... && nice -n 19 go test -count=1 ./...
}
background alerts-test alert_rules

# test/deploy's TestMakeRelease cross-builds the runner for linux/amd64 and
# linux/arm64 through `make release`: with a cold build cache about 2 minutes
# on 2 cores (4 of CPU), all of it compiling. It needs no service, so it runs
# from here in the background at the lowest priority, like the alert rules,
# and the foreground run of test/deploy below skips it. It is waited for at the
# end: while vet and the unit tests keep both cores busy it gets almost no CPU,
# and it takes what the integration tests leave idle.
make_release_test() {
	cd test/deploy
	nice -n 19 go test -race -count=1 -run '^TestMakeRelease$' ./...
}
background release-test make_release_test

# test/deploy is a module of its own (compose-go stays out of the runner's
# module graph); every go command below runs in both.
MODULES=(. test/deploy)

step "go mod tidy: go.mod and go.sum need no change"
for m in "${MODULES[@]}"; do
	(cd "$m" && go mod tidy -diff) || { echo "go mod tidy would change $m/go.mod or go.sum (diff above): run it and commit"; exit 1; }
done

step "go vet"
# With -race, as every go test below: vet compiles each dependency for its
# export data, and with the same flags those compiles are the tests' too (on a
# cold build cache the unit tests' compile went from 134 s to 65 s on 2 cores).
# No file of the repo depends on the race build tag, so vet sees the same files
# (checked here, so that stays true).
if race_tagged=$(git grep -l -E '^//go:build.*\brace\b' -- '*.go'); then
	echo "these files depend on the race build tag, which go vet -race would skip or add: $race_tagged"; exit 1
fi
go vet -race ./...
go vet -race -tags integration ./test/integration/
(cd test/deploy && go vet -race ./... && go vet -race -tags integration ./...)

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

# The second Keycloak's distribution (see the end) is fetched and unpacked now,
# in the background, once Maven is done with the first (two Maven runs on one
# local repository could write the same plugin files at once).
KC_SECOND_VERSION=${KC_SECOND_VERSION-26.7.3}
if [[ -n $KC_SECOND_VERSION ]]; then
	second=(env KC_VERSION="$KC_SECOND_VERSION" KC_WORK_DIR="$ROOT/.work/keycloak-$KC_SECOND_VERSION"
		KC_ENV_FILE="$ROOT/.work/keycloak-$KC_SECOND_VERSION.env")
	background keycloak-second-prepare nice -n 19 "${second[@]}" scripts/keycloak.sh prepare
fi

step "unit tests, fuzz seeds, race detector"
go test -race -count=1 ./...
(cd test/deploy && go test -race -count=1 -skip '^TestMakeRelease$' ./...)

# The Python side (clients/python, demo/django) runs beside the Go integration tests, which spend
# much of their time waiting on Keycloak, Redis and the runner; it needs only the Redis started above
# (its own keys) and a PostgreSQL server it starts itself. Its output is shown when it is waited for.
step "Python client and Django demo (clients/python, demo/django), in the background: shared vectors, Django 4.2 and 5.2, DRF, ASGI, feed consumers on the real Redis and PostgreSQL"
background python-tests scripts/python-tests.sh
step "the patched runner library (third_party/apisix-go-plugin-runner, its own module): vet and tests"
(cd third_party/apisix-go-plugin-runner && go vet ./... && go test -race -count=1 ./...)

step "integration tests: the runner binary over its unix socket, real Redis and Keycloak"
go test -race -count=1 -tags integration -timeout 15m ./test/integration/

step "the soak, short form: 500 users of the realm for 1 min on 3 runners (make reliability: 10 000 users, 10 min)"
RELIABILITY_SOAK=1 SOAK_USERS=500 SOAK_DURATION=1m go test -race -count=1 -tags integration -timeout 10m \
	-run TestReliabilitySoak ./test/integration/

step "Python client and Django demo: waiting for the background run"
wait_background python-tests scripts/python-tests.sh

step "bench-e2e smoke: the benchmark tool runs end to end (-quick; it checks every answer, never the speed)"
go run ./test/bench -quick -out .work/bench-e2e-quick.md >/dev/null

step "the docker compose demo's routes (conf/apisix.yaml) through the runner against the demo realm"
(cd test/deploy && DEMO_KEYCLOAK_URL=$KEYCLOAK_TEST_URL go test -race -count=1 -tags integration -run TestDemoStack ./...)

# The newer Keycloak, in a shorter form: the tests that read organizations,
# users, groups, roles and admin events through the admin API, the privileges
# audit, the back-channel logout and the session events, and the demo realm, with the runner's service account holding
# view-organizations instead of manage-realm (scripts/keycloak.sh grants it
# from 26.7 on). KC_SECOND_VERSION= (empty) skips it.
if [[ -n $KC_SECOND_VERSION ]]; then
	step "Keycloak $KC_SECOND_VERSION: organization, account and privilege tests with the smallest roles"
	# Two Keycloaks do not fit the CI machine at once: stop the one started above.
	if [[ " ${started[*]} " == *" keycloak "* ]]; then
		scripts/keycloak.sh stop
		rest=()
		for s in "${started[@]}"; do [[ $s == keycloak ]] || rest+=("$s"); done
		started=("${rest[@]}")
	fi
	wait_background keycloak-second-prepare "scripts/keycloak.sh prepare for Keycloak $KC_SECOND_VERSION"
	# In CI this version starts once: restore a snapshot if the machine has one, but
	# do not spend a second launch saving one.
	[[ -n ${CI:-} ]] && second+=(KC_SNAPSHOT=read)
	trap '"${second[@]}" scripts/keycloak.sh stop >/dev/null 2>&1 || true; cleanup' EXIT
	"${second[@]}" scripts/keycloak.sh start
	(
		set -a; source "$ROOT/.work/keycloak-$KC_SECOND_VERSION.env"; set +a
		go test -race -count=1 -tags integration -timeout 10m ./test/integration/ \
			-run 'TestMembershipChangesWithoutRelogin|TestOrganizationGroupsMatchAFreshLogin|TestClientRolesMatchAFreshLogin|TestDisabledAndDeletedUsersAreRefusedWithinFreshTTL|TestGroupsAndRolesRefreshed|TestServiceAccountPrivilegesAudit|TestLoggedInUserReachesUpstreamWithVerifiableAssertion|TestInvalidationEndpoint|TestBackchannelLogout|TestAdminEventsOfSessionEnds|TestWatcherRevocationRefusedThroughRunner'
		(cd test/deploy && DEMO_KEYCLOAK_URL=$KEYCLOAK_TEST_URL go test -race -count=1 -tags integration -run TestDemoStack ./...)
	)
fi

step "make release: static binaries for linux/amd64 and linux/arm64 (test/deploy TestMakeRelease, started first, in the background)"
wait_background release-test TestMakeRelease
step "alert rules (deploy/prometheus/alerts.yaml) through Prometheus' rule engine, as promtool test rules does (started first, in the background)"
wait_background alerts-test "deploy/alerts (go mod tidy -diff, vet or test)"
