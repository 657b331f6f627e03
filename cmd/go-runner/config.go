package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/apisix-identity-runner/apisix-identity-runner/cache"
)

// config is the process-wide settings, all from the environment. APISIX
// passes a variable to the runner only when nginx_config.envs lists it.
type config struct {
	listenAddress  string        // APISIX_LISTEN_ADDRESS, set by APISIX: unix:/path.sock
	confExpire     time.Duration // APISIX_CONF_EXPIRE_TIME, set by APISIX, seconds
	logLevel       slog.Level    // RUNNER_LOG_LEVEL: debug, info, warn (default), error
	logFile        string        // RUNNER_LOG_FILE: JSON lines go there instead of stdout; "" = stdout
	signingKeyFile string        // RUNNER_SIGNING_KEY_FILE: PEM private key(s); "" = ephemeral key
	metricsAddr    string        // RUNNER_METRICS_ADDR: host:port for /metrics and /healthz; "" = off
	pprof          bool          // RUNNER_PPROF: serve net/http/pprof on the metrics listener
	redisURL       string        // REDIS_URL: "" = in-process cache only
	redisSecret    []byte        // REDIS_VALUE_SECRET or the file named by REDIS_VALUE_SECRET_FILE: seals cache values in Redis
	localEntries   int           // CACHE_LOCAL_MAX_ENTRIES: in-process tier bound, default 100000; 0 = no in-process tier
	localBytes     int64         // CACHE_LOCAL_MAX_BYTES: in-process tier bound in bytes, default 64 MiB
	memoryLimit    int64         // RUNNER_MEMORY_LIMIT: Go's soft memory limit in bytes, default 224 MiB; 0 = none
	keycloak       keycloakConfig
	shutdownGrace  time.Duration // RUNNER_SHUTDOWN_GRACE: how long SIGTERM waits for in-flight calls, default 600ms
	warnings       []string      // settings that do nothing as given, logged at start
	traces         bool          // OTEL_*: export traces over OTLP/HTTP (tracesEnabled); default off
}

type keycloakConfig struct {
	url            string        // KEYCLOAK_URL: base URL, e.g. https://sso.example.org
	realm          string        // KEYCLOAK_REALM
	issuer         string        // KEYCLOAK_ISSUER: the realm's issuer in tokens; "" = url + "/realms/" + realm
	clientID       string        // KEYCLOAK_CLIENT_ID: the runner's service-account client
	clientSecret   string        // KEYCLOAK_CLIENT_SECRET or the file named by KEYCLOAK_CLIENT_SECRET_FILE
	timeout        time.Duration // KEYCLOAK_TIMEOUT: per admin call, default 3s
	eventsInterval time.Duration // KEYCLOAK_EVENTS_INTERVAL: admin-event poll period, default 500ms; 0s = off
}

// enabled is true when the admin API is configured (orgsync needs it).
func (k keycloakConfig) enabled() bool { return k.url != "" }

// envVars lists every variable the runner reads, for `go-runner env` and the
// test that checks conf/config.yaml's nginx_config.envs.
var envVars = []string{
	"APISIX_LISTEN_ADDRESS", "APISIX_CONF_EXPIRE_TIME", "RUNNER_LOG_LEVEL", "RUNNER_LOG_FILE", "RUNNER_SIGNING_KEY_FILE",
	"RUNNER_METRICS_ADDR", "RUNNER_PPROF", "RUNNER_SHUTDOWN_GRACE", "REDIS_URL", "REDIS_VALUE_SECRET", "REDIS_VALUE_SECRET_FILE",
	"KEYCLOAK_URL", "KEYCLOAK_REALM", "KEYCLOAK_ISSUER", "KEYCLOAK_CLIENT_ID", "KEYCLOAK_CLIENT_SECRET",
	"KEYCLOAK_CLIENT_SECRET_FILE", "KEYCLOAK_TIMEOUT",
	"KEYCLOAK_EVENTS_INTERVAL", "ORGSYNC_WEBHOOK_SECRET", "CACHE_LOCAL_MAX_ENTRIES", "CACHE_LOCAL_MAX_BYTES",
	"RUNNER_MEMORY_LIMIT",
}

func init() { envVars = append(envVars, traceVars...) }

func loadConfig(getenv func(string) string) (*config, error) {
	c := &config{
		listenAddress:  getenv("APISIX_LISTEN_ADDRESS"),
		signingKeyFile: getenv("RUNNER_SIGNING_KEY_FILE"),
		logFile:        getenv("RUNNER_LOG_FILE"),
		metricsAddr:    getenv("RUNNER_METRICS_ADDR"),
		redisURL:       getenv("REDIS_URL"),
		keycloak: keycloakConfig{
			url:      strings.TrimSuffix(getenv("KEYCLOAK_URL"), "/"),
			realm:    getenv("KEYCLOAK_REALM"),
			issuer:   getenv("KEYCLOAK_ISSUER"),
			clientID: getenv("KEYCLOAK_CLIENT_ID"),
		},
	}
	if missing := missingVars(getenv); len(missing) > 0 {
		return nil, fmt.Errorf("required variables not set: %s", strings.Join(missing, "; "))
	}
	c.warnings = strayKeycloakVars(getenv)
	if !strings.HasPrefix(c.listenAddress, "unix:") || len(c.listenAddress) == len("unix:") {
		return nil, fmt.Errorf("APISIX_LISTEN_ADDRESS %q: want unix:/path/to/socket (APISIX sets it when it starts the runner)", c.listenAddress)
	}
	if c.metricsAddr != "" {
		if _, port, err := net.SplitHostPort(c.metricsAddr); err != nil || port == "" {
			return nil, fmt.Errorf("RUNNER_METRICS_ADDR %q: want host:port, e.g. 127.0.0.1:9542", c.metricsAddr)
		}
	}
	switch v := strings.ToLower(getenv("RUNNER_PPROF")); v {
	case "", "0", "false":
	case "1", "true":
		if c.metricsAddr == "" {
			return nil, fmt.Errorf("RUNNER_PPROF is set but RUNNER_METRICS_ADDR is not: pprof is served on the metrics listener")
		}
		c.pprof = true
	default:
		return nil, fmt.Errorf("RUNNER_PPROF %q: want 1 (on) or 0 (off)", v)
	}
	var err error
	if c.confExpire, err = seconds(getenv, "APISIX_CONF_EXPIRE_TIME", 3600*time.Second); err != nil {
		return nil, err
	}
	switch v := strings.ToLower(getenv("RUNNER_LOG_LEVEL")); v {
	case "debug":
		c.logLevel = slog.LevelDebug
	case "info":
		c.logLevel = slog.LevelInfo
	case "", "warn", "warning":
		c.logLevel = slog.LevelWarn
	case "error":
		c.logLevel = slog.LevelError
	default:
		return nil, fmt.Errorf("RUNNER_LOG_LEVEL %q: want debug, info, warn or error", v)
	}
	if c.signingKeyFile != "" {
		if _, err := os.Stat(c.signingKeyFile); err != nil {
			return nil, fmt.Errorf("RUNNER_SIGNING_KEY_FILE: %w", err)
		}
	}
	if c.shutdownGrace, err = duration(getenv, "RUNNER_SHUTDOWN_GRACE", defaultShutdownGrace); err != nil {
		return nil, err
	}
	if c.localEntries, err = count(getenv, "CACHE_LOCAL_MAX_ENTRIES", 100000); err != nil {
		return nil, err
	}
	n, err := count(getenv, "CACHE_LOCAL_MAX_BYTES", 64<<20)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, fmt.Errorf("CACHE_LOCAL_MAX_BYTES \"0\": want a positive number of bytes (CACHE_LOCAL_MAX_ENTRIES=0 turns the in-process tier off)")
	}
	c.localBytes = int64(n)
	// The caches are bounded in bytes (about 130 MiB by default); the limit
	// makes the garbage collector keep the heap near that instead of twice
	// the live data, so the process stays within its budget.
	if n, err = count(getenv, "RUNNER_MEMORY_LIMIT", defaultMemoryLimit); err != nil {
		return nil, err
	}
	if n != 0 && n < minMemoryLimit {
		return nil, fmt.Errorf("RUNNER_MEMORY_LIMIT %d: want 0 (no limit) or at least %d bytes (64 MiB)", n, minMemoryLimit)
	}
	c.memoryLimit = int64(n)
	if c.redisURL != "" && !strings.Contains(c.redisURL, "://") {
		return nil, fmt.Errorf("REDIS_URL %q: want a URL such as redis://host:6379/0", c.redisURL)
	}
	if c.redisSecret, err = secretVar(getenv, "REDIS_VALUE_SECRET"); err != nil {
		return nil, err
	}
	// Fail closed: without the secret, whoever can write Redis would decide the roles, groups and
	// account state the fleet signs into assertions. A runner without REDIS_URL shares nothing.
	switch {
	case c.redisURL != "" && len(c.redisSecret) == 0:
		return nil, fmt.Errorf("REDIS_VALUE_SECRET (or REDIS_VALUE_SECRET_FILE) is required when REDIS_URL is set: "+
			"the fleet's shared secret (at least %d bytes, the same on every runner) that seals cached values in Redis, "+
			"e.g. openssl rand -base64 48", cache.MinValueSecret)
	case c.redisURL != "" && len(c.redisSecret) < cache.MinValueSecret:
		return nil, fmt.Errorf("REDIS_VALUE_SECRET: %d bytes, want at least %d", len(c.redisSecret), cache.MinValueSecret)
	}
	if c.traces, err = tracesEnabled(getenv); err != nil {
		return nil, err
	}
	k := &c.keycloak
	if k.timeout, err = duration(getenv, "KEYCLOAK_TIMEOUT", 3*time.Second); err != nil {
		return nil, err
	}
	if k.eventsInterval, err = duration(getenv, "KEYCLOAK_EVENTS_INTERVAL", 500*time.Millisecond); err != nil {
		return nil, err
	}
	secret, err := secretVar(getenv, "KEYCLOAK_CLIENT_SECRET")
	if err != nil {
		return nil, err
	}
	k.clientSecret = string(secret)
	if k.url != "" {
		if !strings.HasPrefix(k.url, "http://") && !strings.HasPrefix(k.url, "https://") {
			return nil, fmt.Errorf("KEYCLOAK_URL %q: want an http(s) URL", k.url)
		}
		if k.clientSecret == "" {
			// Set, to a file holding only white space.
			return nil, fmt.Errorf("KEYCLOAK_CLIENT_SECRET_FILE: the file is empty")
		}
	} else if k.issuer != "" {
		return nil, fmt.Errorf("KEYCLOAK_ISSUER is set but KEYCLOAK_URL is not: it names the issuer of KEYCLOAK_URL's realm")
	}
	return c, nil
}

// missingVars names every required variable that is not set, in a fixed
// order, each with what requires it and the _FILE alternative of a secret: a
// runner refused at start says all that is missing at once.
func missingVars(getenv func(string) string) []string {
	var missing []string
	secret := func(name string) bool { return getenv(name) != "" || getenv(name+"_FILE") != "" }
	if getenv("APISIX_LISTEN_ADDRESS") == "" {
		missing = append(missing, "APISIX_LISTEN_ADDRESS (APISIX sets it when it starts the runner; make run sets it too)")
	}
	if getenv("REDIS_URL") != "" && !secret("REDIS_VALUE_SECRET") {
		missing = append(missing, "REDIS_VALUE_SECRET or REDIS_VALUE_SECRET_FILE (with REDIS_URL: the fleet's shared secret, "+
			fmt.Sprintf("at least %d bytes, the same on every runner, that seals cached values in Redis, e.g. openssl rand -base64 48)", cache.MinValueSecret))
	}
	if getenv("KEYCLOAK_URL") != "" {
		for _, name := range []string{"KEYCLOAK_REALM", "KEYCLOAK_CLIENT_ID"} {
			if getenv(name) == "" {
				missing = append(missing, name+" (with KEYCLOAK_URL)")
			}
		}
		if !secret("KEYCLOAK_CLIENT_SECRET") {
			missing = append(missing, "KEYCLOAK_CLIENT_SECRET or KEYCLOAK_CLIENT_SECRET_FILE (with KEYCLOAK_URL)")
		}
	}
	return missing
}

// strayKeycloakVars warns of Keycloak settings given without KEYCLOAK_URL:
// the runner then has no admin client, which is allowed (userinfo alone) but
// rarely meant.
func strayKeycloakVars(getenv func(string) string) []string {
	if getenv("KEYCLOAK_URL") != "" {
		return nil
	}
	var set []string
	for _, name := range []string{"KEYCLOAK_REALM", "KEYCLOAK_CLIENT_ID", "KEYCLOAK_CLIENT_SECRET", "KEYCLOAK_CLIENT_SECRET_FILE"} {
		if getenv(name) != "" {
			set = append(set, name)
		}
	}
	if len(set) == 0 {
		return nil
	}
	return []string{strings.Join(set, ", ") + " set but KEYCLOAK_URL is not: the runner has no Keycloak admin client, " +
		"so orgsync routes answer 500 and no admin event is read"}
}

// secretVar reads the secret in the variable name, or in the file named by name_FILE (surrounding
// white space trimmed); at most one of the two may be set.
func secretVar(getenv func(string) string, name string) ([]byte, error) {
	secret := getenv(name)
	file := getenv(name + "_FILE")
	if file == "" {
		return []byte(secret), nil
	}
	if secret != "" {
		return nil, fmt.Errorf("%s and %s_FILE are both set: keep one", name, name)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s_FILE: %w", name, err)
	}
	return []byte(strings.TrimSpace(string(b))), nil
}

// defaultShutdownGrace, counted from SIGTERM, leaves room inside the second
// APISIX allows before SIGKILL for closing the clients after the drain.
const defaultShutdownGrace = 600 * time.Millisecond

func duration(getenv func(string) string, name string, def time.Duration) (time.Duration, error) {
	v := getenv(name)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s %q: want a duration such as \"2s\"", name, v)
	}
	return d, nil
}

// count reads a whole number >= 0 (entries or bytes).
// defaultMemoryLimit is the runner's memory budget; minMemoryLimit is the
// least that leaves the caches their default room.
const (
	defaultMemoryLimit = 224 << 20
	minMemoryLimit     = 64 << 20
)

func count(getenv func(string) string, name string, def int) (int, error) {
	v := getenv(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s %q: want a whole number >= 0", name, v)
	}
	return n, nil
}

func seconds(getenv func(string) string, name string, def time.Duration) (time.Duration, error) {
	v := getenv(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%s %q: want a positive number of seconds", name, v)
	}
	return time.Duration(n) * time.Second, nil
}
