#!/usr/bin/env bash
# Health check of the apisix container (the Dockerfile copies it to /usr/local/apisix/apisix-healthcheck.sh).
# Healthy when both answer:
#   - APISIX's status API: /status/ready is 200 once every worker has loaded conf/apisix.yaml;
#   - the runner's /healthz on RUNNER_METRICS_ADDR (skipped when unset). It answers only when the runner has
#     started with its environment, so a variable missing from nginx_config.envs shows up here.
# The image has no curl: bash's /dev/tcp speaks HTTP/1.0.
#
# Settings: APISIX_STATUS_ADDR (default 127.0.0.1:7085, conf/config.yaml apisix.status), RUNNER_METRICS_ADDR.
set -uo pipefail

# http_ok HOST:PORT PATH: true when GET PATH answers 200.
http_ok() {
	local addr=$1 path=$2 host port status
	host=${addr%:*}
	port=${addr##*:}
	[[ -z $host || $host == 0.0.0.0 || $host == "[::]" ]] && host=127.0.0.1
	exec 3<>"/dev/tcp/$host/$port" || { echo "healthcheck: $addr: connection refused" >&2; return 1; }
	printf 'GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n' "$path" "$host" >&3
	IFS= read -r -t 3 status <&3 || status=""
	exec 3<&- 3>&-
	status=${status%$'\r'}
	if [[ $status != "HTTP/1."[01]" 200"* ]]; then
		echo "healthcheck: GET $addr$path: ${status:-no answer}" >&2
		return 1
	fi
}

http_ok "${APISIX_STATUS_ADDR:-127.0.0.1:7085}" /status/ready || exit 1
if [[ -n ${RUNNER_METRICS_ADDR:-} ]]; then
	http_ok "$RUNNER_METRICS_ADDR" /healthz || exit 1
fi
exit 0
