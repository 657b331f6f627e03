# Shared by scripts/redis.sh and scripts/keycloak.sh, which set NAME (for
# messages) and ENV_FILE and define start, stop_quiet and running before
# calling service_main "$@".

log() { printf '%s: %s\n' "$NAME" "$*" >&2; }
die() { log "$*"; exit 1; }

# port_free PORT: true when nothing listens on 127.0.0.1:PORT.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port [EXCEPT]: a free TCP port other than EXCEPT, below the range the kernel hands out to outgoing
# connections (ip_local_port_range, 32768-60999 by default): Keycloak binds its port some 40 s after this choice,
# and meanwhile one of the connections the run makes (Maven, go, pip) could be given a port in that range. That
# happened: "Port already bound" at Keycloak's start. 10000 up to the range's start; 20000-59999 if the range starts
# too low to leave room.
free_port() {
	local p i lo=32768 first=10000 span
	read -r lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
	span=$((lo - first))
	if ((span < 2000)); then
		first=20000 span=40000
	fi
	for i in $(seq 1 200); do
		p=$((first + (RANDOM * 32768 + RANDOM) % span))
		[[ $p == "${1:-}" ]] && continue
		if port_free "$p"; then
			echo "$p"
			return 0
		fi
	done
	die "no free port found"
}

stop() {
	if [[ ! -f $ENV_FILE ]]; then
		log "not running (no $ENV_FILE)"
		return 0
	fi
	stop_quiet
	log "stopped"
}

service_main() {
	case "${1:-}" in
	start) start ;;
	stop) stop ;;
	restart) stop_quiet; start ;;
	status) if running; then log "running"; else log "not running"; exit 1; fi ;;
	env) [[ -f $ENV_FILE ]] && cat "$ENV_FILE" || die "not running (no $ENV_FILE)" ;;
	*) echo "usage: $0 start|stop|restart|status|env" >&2; exit 2 ;;
	esac
}
