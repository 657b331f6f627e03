#!/usr/bin/env bash
# `make demo`: membership changes in Keycloak reaching the app without a new login (a route only acme members pass
# refusing Alice once an admin removes her from acme), and sessions ended in Keycloak
# (an admin's sign-out, a logout) sending the browser to a fresh login at the gateway, with no Docker.
#
# Starts a Redis of its own (scripts/redis.sh, under .work/demo) and the test Keycloak (scripts/keycloak.sh; a
# Keycloak that is already running from its env file is used as it is), builds the runner, then runs demo/story:
# the real runner binary, started and driven the way APISIX does it (test/apisix), and Alice's story told step by
# step. For the run, the story points the apisix client's back-channel logout URL at a loopback server of its own.
# On exit, success, failure or Ctrl-C alike, the story restores Alice and that URL and stops the runner, and this
# script stops what it started.
#
# Settings (environment): KC_ENV_FILE, KC_WORK_DIR and the other KC_* of scripts/keycloak.sh;
#   DEMO_DIR     work directory for the demo's Redis and binaries. Default <repo>/.work/demo.
#   DEMO_TIMEOUT how long each step may take. Default 10s.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

DEMO_DIR=${DEMO_DIR:-$ROOT/.work/demo}
BIN=$ROOT/.work/bin
export KC_ENV_FILE=${KC_ENV_FILE:-$ROOT/.work/keycloak.env}
# The demo's own Redis: a fresh cache every run, and no interference with the test Redis.
export REDIS_WORK_DIR=$DEMO_DIR/redis REDIS_ENV_FILE=$DEMO_DIR/redis.env

say() { printf 'demo.sh: %s\n' "$*" >&2; }

started_redis=0
started_keycloak=0
story_pid=
t0=$SECONDS

finish() {
	local rc=$?
	trap - EXIT INT TERM
	if [[ -n $story_pid ]] && kill -0 "$story_pid" 2>/dev/null; then
		# The story cleans up (Alice, the runner) on its first signal; wait for it.
		kill -TERM "$story_pid" 2>/dev/null || true
		wait "$story_pid" 2>/dev/null || true
	fi
	if ((started_redis)); then scripts/redis.sh stop >/dev/null 2>&1 || say "could not stop the demo's Redis"; fi
	if ((started_keycloak)); then
		say "stopping the Keycloak it started"
		scripts/keycloak.sh stop >/dev/null 2>&1 || say "could not stop Keycloak (scripts/keycloak.sh stop)"
	fi
	if ((rc == 0)); then
		say "finished in $((SECONDS - t0))s; everything it started is stopped"
	else
		say "FAILED (exit $rc) after $((SECONDS - t0))s; everything it started is stopped"
	fi
	exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "building the runner and the story into $BIN"
mkdir -p "$BIN" "$DEMO_DIR"
go build -o "$BIN/go-runner" ./cmd/go-runner
go build -o "$BIN/demo-story" ./demo/story

started_redis=1
out=$(scripts/redis.sh restart 2>&1) || { printf '%s\n' "$out" >&2; say "could not start Redis"; exit 1; }
REDIS_URL=$(sed -n 's/^REDIS_TEST_URL=//p' "$REDIS_ENV_FILE")
say "Redis of its own on $REDIS_URL"

if scripts/keycloak.sh status >/dev/null 2>&1; then
	say "using the Keycloak already running ($(sed -n 's/^KEYCLOAK_TEST_URL=//p' "$KC_ENV_FILE")); it stays up"
else
	say "starting Keycloak (about 20 s from the cached database snapshot; minutes on the very first run)"
	started_keycloak=1
	scripts/keycloak.sh start 2>&1 | sed 's/^/  /' >&2
fi
KEYCLOAK_URL=$(sed -n 's/^KEYCLOAK_TEST_URL=//p' "$KC_ENV_FILE")
[[ -n $KEYCLOAK_URL ]] || { say "no KEYCLOAK_TEST_URL in $KC_ENV_FILE"; exit 1; }
echo

# In the background so that a signal to this script reaches the story at once (bash runs traps only after a
# foreground command ends); the story handles SIGINT and SIGTERM itself.
"$BIN/demo-story" -runner "$BIN/go-runner" -keycloak "$KEYCLOAK_URL" -redis "$REDIS_URL" \
	-timeout "${DEMO_TIMEOUT:-10s}" &
story_pid=$!
rc=0
wait "$story_pid" || rc=$?
story_pid=
exit "$rc"
