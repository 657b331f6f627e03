#!/usr/bin/env bash
# Run a throwaway Keycloak for tests, without Docker.
#
#   scripts/keycloak.sh start    download (once), unpack (once), import test/keycloak/*.json, start, wait
#   scripts/keycloak.sh prepare  download (once) and unpack (once) only, so a later start need not wait for them
#   scripts/keycloak.sh stop     stop the server started by "start"
#   scripts/keycloak.sh status   exit 0 when the server answers
#   scripts/keycloak.sh env      print the env file
#
# "start" is idempotent: when the server from the env file still answers, it does nothing.
# Every start is a fresh database (data/h2 is replaced), so the realm is always the one in the repo.
#
# Settings (environment):
#   KC_VERSION      Keycloak version. Default 26.5.6.
#   KEYCLOAK_ORG_ROLE the runner's organization role in the realm files. Default: view-organizations from 26.7 on,
#                   manage-realm before.
#   KC_CACHE_DIR    where the distribution tarball is kept. Default ${XDG_CACHE_HOME:-$HOME/.cache}/apisix-identity-runner.
#   KC_WORK_DIR     where it is unpacked and run. Default <repo>/.work/keycloak.
#   KC_ENV_FILE     the env file written after start. Default <repo>/.work/keycloak.env.
#   KC_REALM_DIR    realm JSON files to import. Default <repo>/test/keycloak.
#   KC_EXTRA_REALMS more realm JSON files, space-separated. Default <repo>/conf/keycloak/realm-demo.json.
#   KC_HTTP_PORT    HTTP port. Default: a free port.
#   KC_START_TIMEOUT seconds to wait for the realm to answer. Default 180.
#   KC_SNAPSHOT     1 (default): keep the database after the first import of these realm files and restore it on
#                   later starts (same realm JSON and version only); 0: import every time; read: restore one when
#                   there is one, never save one (a CI run that starts this version once: saving costs a second launch).
#   JAVA_HOME       the JDK (17, 21 or 25). Default: java on PATH.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KC_VERSION=${KC_VERSION:-26.5.6}
KC_CACHE_DIR=${KC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/apisix-identity-runner}
KC_WORK_DIR=${KC_WORK_DIR:-$ROOT/.work/keycloak}
KC_ENV_FILE=${KC_ENV_FILE:-$ROOT/.work/keycloak.env}
KC_REALM_DIR=${KC_REALM_DIR:-$ROOT/test/keycloak}
# The docker compose demo realm is imported too, so its routes are tested against a real Keycloak.
KC_EXTRA_REALMS=${KC_EXTRA_REALMS-$ROOT/conf/keycloak/realm-demo.json}
KC_START_TIMEOUT=${KC_START_TIMEOUT:-180}

# Values that match test/keycloak/realm-test.json.
REALM=olapps
ADMIN_USER=admin
ADMIN_PASSWORD=admin
OIDC_CLIENT_ID=apisix
OIDC_CLIENT_SECRET=apisix-test-secret
SA_CLIENT_ID=identity-runner
SA_CLIENT_SECRET=identity-runner-test-secret

TARBALL=keycloak-quarkus-dist-$KC_VERSION.tar.gz
# Fetched with Maven by its coordinates, so the machine's Maven settings
# (mirrors, proxies, credentials) apply as they would behind a corporate mirror.
ARTIFACT=org.keycloak:keycloak-quarkus-dist:$KC_VERSION:tar.gz
KC_HOME=$KC_WORK_DIR/keycloak-$KC_VERSION
LOG_FILE=$KC_WORK_DIR/keycloak.log

NAME=keycloak.sh
ENV_FILE=$KC_ENV_FILE
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

need() { command -v "$1" >/dev/null 2>&1 || die "$1 is required but not installed"; }

# running: true when the env file names a live process whose realm answers.
running() {
	[[ -f $KC_ENV_FILE ]] || return 1
	local pid url realm
	pid=$(sed -n 's/^KEYCLOAK_TEST_PID=//p' "$KC_ENV_FILE")
	url=$(sed -n 's/^KEYCLOAK_TEST_URL=//p' "$KC_ENV_FILE")
	realm=$(sed -n 's/^KEYCLOAK_TEST_REALM=//p' "$KC_ENV_FILE")
	[[ -n $pid && -n $url ]] || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	curl -fsS -o /dev/null --max-time 5 "$url/realms/$realm/.well-known/openid-configuration"
}

download() {
	mkdir -p "$KC_CACHE_DIR"
	[[ -s $KC_CACHE_DIR/$TARBALL ]] && return 0
	need mvn
	log "fetching $ARTIFACT with Maven"
	local repo
	repo=$(mvn -q help:evaluate -Dexpression=settings.localRepository -DforceStdout 2>/dev/null || true)
	[[ -n $repo && -d $repo ]] || repo=$HOME/.m2/repository
	# --strict-checksums: Maven refuses a download whose published checksum
	# does not match, instead of warning.
	mvn -q -B --strict-checksums dependency:copy -Dartifact="$ARTIFACT" -DoutputDirectory="$KC_CACHE_DIR" \
		-Dmdep.overWriteReleases=true -Dmaven.repo.local="$repo" >&2 ||
		die "mvn could not fetch $ARTIFACT (network, or the version does not exist)"
	local tmp=$KC_CACHE_DIR/$TARBALL
	[[ -s $tmp ]] || die "mvn reported success but $tmp is missing"
	# Checked again here against the .sha1 Maven stored beside the artifact in
	# the local repository, so a corrupted cache is caught too.
	local sha_file=$repo/org/keycloak/keycloak-quarkus-dist/$KC_VERSION/$TARBALL.sha1
	if [[ -s $sha_file ]]; then
		local want got
		want=$(cut -c1-40 "$sha_file")
		got=$(sha1sum "$tmp" | cut -c1-40)
		[[ $want == "$got" ]] || { rm -f "$tmp"; die "checksum mismatch for $TARBALL: want $want got $got"; }
	else
		log "no .sha1 beside the artifact in $repo: relying on Maven's own checksum check"
	fi
}

unpack() {
	[[ -x $KC_HOME/bin/kc.sh ]] && return 0
	log "unpacking $TARBALL into $KC_WORK_DIR"
	mkdir -p "$KC_WORK_DIR"
	tar -xzf "$KC_CACHE_DIR/$TARBALL" -C "$KC_WORK_DIR"
}

check_java() {
	local java=java
	[[ -n ${JAVA_HOME:-} ]] && java=$JAVA_HOME/bin/java
	command -v "$java" >/dev/null 2>&1 || die "no java found (install OpenJDK 17, 21 or 25, or set JAVA_HOME)"
	local v
	v=$("$java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
	[[ -n $v && $v -ge 17 ]] || die "java $v is too old: Keycloak $KC_VERSION needs 17 or newer"
}

# org_role: the smallest realm-management role that reads organizations on KC_VERSION.
org_role() {
	local major minor
	IFS=. read -r major minor _ <<<"$KC_VERSION"
	if ((major > 26 || (major == 26 && minor >= 7))); then echo view-organizations; else echo manage-realm; fi
}

# launch PORT MPORT: start kc.sh in its own session and wait until the realm answers; sets PID.
launch() {
	local port=$1 mport=$2
	local url=http://127.0.0.1:$port
	# Fast start: no health/metrics endpoints, local caches, C1 JIT only (start-up beats peak speed in tests).
	# The build options stay the same on every run, so Keycloak re-augments only on the first run.
	(
		cd "$KC_HOME"
		export KC_BOOTSTRAP_ADMIN_USERNAME=$ADMIN_USER KC_BOOTSTRAP_ADMIN_PASSWORD=$ADMIN_PASSWORD
		# The runner's organization role in the realm files (${KEYCLOAK_ORG_ROLE:manage-realm}): 26.7 added
		# view-organizations, the smallest role that reads organizations; before it only manage-realm does.
		export KEYCLOAK_ORG_ROLE=${KEYCLOAK_ORG_ROLE:-$(org_role)}
		export JAVA_OPTS_APPEND="${KC_JAVA_OPTS_APPEND:--XX:TieredStopAtLevel=1 -Xshare:auto}"
		exec setsid bin/kc.sh start-dev \
			--http-host=127.0.0.1 \
			--http-port="$port" \
			--http-management-port="$mport" \
			--hostname-strict=false \
			--health-enabled=false \
			--metrics-enabled=false \
			--cache=local \
			--import-realm \
			--log-level=info \
			</dev/null >>"$LOG_FILE" 2>&1
	) &
	PID=$!
	log "starting Keycloak $KC_VERSION on $url (pid $PID, log $LOG_FILE)"

	local deadline=$((SECONDS + KC_START_TIMEOUT))
	until curl -fsS -o /dev/null --max-time 2 "$url/realms/$REALM/.well-known/openid-configuration" 2>/dev/null; do
		if ! kill -0 "$PID" 2>/dev/null; then
			tail -n 40 "$LOG_FILE" >&2 || true
			die "Keycloak exited during start-up (log $LOG_FILE)"
		fi
		if ((SECONDS >= deadline)); then
			tail -n 40 "$LOG_FILE" >&2 || true
			kill_group "$PID"
			die "Keycloak did not answer within ${KC_START_TIMEOUT}s (log $LOG_FILE)"
		fi
		sleep 0.3
	done
}

# kill_group PID: SIGTERM the process group led by PID (kc.sh runs under setsid), wait, then SIGKILL.
kill_group() {
	local pid=$1 i
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
	for i in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.2
	done
	log "pid $pid ignored SIGTERM for 20s; sending SIGKILL"
	kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
}

start() {
	need curl
	need sha256sum
	if running; then
		log "already running ($(sed -n 's/^KEYCLOAK_TEST_URL=//p' "$KC_ENV_FILE"))"
		return 0
	fi
	stop_quiet
	check_java
	download
	unpack

	local realm_files=("$KC_REALM_DIR"/*.json)
	[[ -e ${realm_files[0]} ]] || die "no realm JSON in $KC_REALM_DIR"
	local extra
	for extra in $KC_EXTRA_REALMS; do
		[[ -f $extra ]] || die "KC_EXTRA_REALMS: no file $extra"
		realm_files+=("$extra")
	done
	# A snapshot is the H2 database right after a clean import of exactly these realm files into this version.
	# Restoring it is as fresh as importing again, and skips schema creation and import (about 20 s).
	local key snap
	key=$( (echo "$KC_VERSION"; echo "${KEYCLOAK_ORG_ROLE:-$(org_role)}"; cat "${realm_files[@]}") | sha256sum | cut -c1-16)
	snap=$KC_CACHE_DIR/snapshots/keycloak-$KC_VERSION-$key

	rm -rf "$KC_HOME/data/h2" "$KC_HOME/data/import" "$KC_HOME/data/tmp"
	mkdir -p "$KC_HOME/data/import" "$KC_HOME/data/h2"
	: >"$LOG_FILE"
	local port mport t0
	port=${KC_HTTP_PORT:-$(free_port)}
	mport=$(free_port "$port")
	t0=$(date +%s.%N)

	if [[ ${KC_SNAPSHOT:-1} != 0 && -s $snap/keycloakdb.mv.db ]]; then
		cp "$snap/keycloakdb.mv.db" "$KC_HOME/data/h2/"
		log "restoring database snapshot $key"
		launch "$port" "$mport"
	else
		cp "${realm_files[@]}" "$KC_HOME/data/import/"
		launch "$port" "$mport"
		if [[ ${KC_SNAPSHOT:-1} != 0 && ${KC_SNAPSHOT:-1} != read ]]; then
			# H2 files are consistent only after a clean shutdown: stop, keep a copy, start again from it.
			kill_group "$PID"
			rm -rf "$snap.tmp" && mkdir -p "$snap.tmp"
			cp "$KC_HOME/data/h2/keycloakdb.mv.db" "$snap.tmp/"
			rm -rf "$snap" && mv "$snap.tmp" "$snap"
			# Snapshots of older realm files are of no further use.
			find "$KC_CACHE_DIR/snapshots" -mindepth 1 -maxdepth 1 -type d -name "keycloak-$KC_VERSION-*" \
				! -name "${snap##*/}" -exec rm -rf {} +
			log "saved database snapshot $key"
			rm -f "$KC_HOME/data/import/"*.json
			launch "$port" "$mport"
		fi
	fi

	local took url=http://127.0.0.1:$port
	took=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
	mkdir -p "$(dirname "$KC_ENV_FILE")"
	cat >"$KC_ENV_FILE" <<EOF
# Written by scripts/keycloak.sh start; source it or let test/kctest read it.
KEYCLOAK_TEST_URL=$url
KEYCLOAK_TEST_REALM=$REALM
KEYCLOAK_TEST_ISSUER=$url/realms/$REALM
KEYCLOAK_TEST_ADMIN_USER=$ADMIN_USER
KEYCLOAK_TEST_ADMIN_PASSWORD=$ADMIN_PASSWORD
KEYCLOAK_TEST_CLIENT_ID=$OIDC_CLIENT_ID
KEYCLOAK_TEST_CLIENT_SECRET=$OIDC_CLIENT_SECRET
KEYCLOAK_TEST_SA_CLIENT_ID=$SA_CLIENT_ID
KEYCLOAK_TEST_SA_CLIENT_SECRET=$SA_CLIENT_SECRET
KEYCLOAK_TEST_PID=$PID
KEYCLOAK_TEST_LOG=$LOG_FILE
EOF
	log "ready in ${took}s; env file $KC_ENV_FILE"
}

# stop_quiet: stop the server named in the env file, if any.
stop_quiet() {
	[[ -f $KC_ENV_FILE ]] || return 0
	local pid
	pid=$(sed -n 's/^KEYCLOAK_TEST_PID=//p' "$KC_ENV_FILE")
	rm -f "$KC_ENV_FILE"
	[[ -n $pid ]] || return 0
	kill_group "$pid"
}

if [[ ${1:-} == prepare ]]; then
	download
	unpack
	exit 0
fi
service_main "$@"
