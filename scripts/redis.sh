#!/usr/bin/env bash
# Run a throwaway Redis for tests: loopback only, no persistence, a free port.
#
#   scripts/redis.sh start    start (idempotent) and write the env file
#   scripts/redis.sh stop     stop it
#   scripts/redis.sh env      print the env file
#
# Settings (environment):
#   REDIS_WORK_DIR  pid, log and config live here. Default <repo>/.work/redis.
#   REDIS_ENV_FILE  the env file. Default <repo>/.work/redis.env.
#   REDIS_PORT      the port. Default: a free port.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REDIS_WORK_DIR=${REDIS_WORK_DIR:-$ROOT/.work/redis}
REDIS_ENV_FILE=${REDIS_ENV_FILE:-$ROOT/.work/redis.env}

NAME=redis.sh
ENV_FILE=$REDIS_ENV_FILE
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

env_value() { sed -n "s/^$1=//p" "$REDIS_ENV_FILE"; }

running() {
	[[ -f $REDIS_ENV_FILE ]] || return 1
	local pid port
	pid=$(env_value REDIS_TEST_PID)
	port=$(env_value REDIS_TEST_PORT)
	[[ -n $pid && -n $port ]] || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG
}

start() {
	command -v redis-server >/dev/null 2>&1 || die "redis-server is not installed (Debian: apt-get install redis-server)"
	command -v redis-cli >/dev/null 2>&1 || die "redis-cli is not installed (Debian: apt-get install redis-tools)"
	if running; then
		log "already running ($(env_value REDIS_TEST_URL))"
		return 0
	fi
	stop_quiet
	mkdir -p "$REDIS_WORK_DIR"
	local port=${REDIS_PORT:-$(free_port)}
	local pidfile=$REDIS_WORK_DIR/redis.pid logfile=$REDIS_WORK_DIR/redis.log
	rm -f "$pidfile"
	redis-server - <<EOF
bind 127.0.0.1 -::1
protected-mode yes
port $port
unixsocket $REDIS_WORK_DIR/redis.sock
unixsocketperm 700
daemonize yes
pidfile $pidfile
logfile $logfile
dir $REDIS_WORK_DIR
save ""
appendonly no
databases 16
EOF
	local i
	for i in $(seq 1 100); do
		if redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; then
			break
		fi
		((i == 100)) && { tail -n 20 "$logfile" >&2 || true; die "redis-server did not answer on port $port"; }
		sleep 0.1
	done
	local pid
	pid=$(cat "$pidfile")
	mkdir -p "$(dirname "$REDIS_ENV_FILE")"
	cat >"$REDIS_ENV_FILE" <<EOF
# Written by scripts/redis.sh start.
REDIS_TEST_URL=redis://127.0.0.1:$port/0
REDIS_TEST_UNIX_URL=unix://$REDIS_WORK_DIR/redis.sock?db=0
REDIS_TEST_PORT=$port
REDIS_TEST_PID=$pid
EOF
	log "ready on redis://127.0.0.1:$port/0 (pid $pid); env file $REDIS_ENV_FILE"
}

stop_quiet() {
	[[ -f $REDIS_ENV_FILE ]] || return 0
	local pid
	pid=$(env_value REDIS_TEST_PID)
	rm -f "$REDIS_ENV_FILE"
	[[ -n $pid ]] || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	local i
	for i in $(seq 1 50); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
}

service_main "$@"
