package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func getenv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadConfigDefaults(t *testing.T) {
	cfg, err := loadConfig(getenv(map[string]string{"APISIX_LISTEN_ADDRESS": "unix:/tmp/r.sock"}))
	require.NoError(t, err)
	assert.Equal(t, slog.LevelWarn, cfg.logLevel)
	assert.Equal(t, time.Hour, cfg.confExpire)
	assert.Equal(t, 3*time.Second, cfg.keycloak.timeout)
	assert.Equal(t, 500*time.Millisecond, cfg.keycloak.eventsInterval)
	assert.Equal(t, 600*time.Millisecond, cfg.shutdownGrace, "inside the second APISIX waits before SIGKILL")
	assert.False(t, cfg.keycloak.enabled())
	assert.Empty(t, cfg.redisURL, "no REDIS_URL: the in-process cache")
	assert.Equal(t, 100000, cfg.localEntries)
	assert.Equal(t, int64(64<<20), cfg.localBytes)
	assert.Equal(t, int64(224<<20), cfg.memoryLimit, "the runner's memory budget, less what is not Go heap")

	cfg, err = loadConfig(getenv(map[string]string{"APISIX_LISTEN_ADDRESS": "unix:/tmp/r.sock",
		"CACHE_LOCAL_MAX_ENTRIES": "0", "CACHE_LOCAL_MAX_BYTES": "1048576"}))
	require.NoError(t, err)
	assert.Equal(t, 0, cfg.localEntries, "0: no in-process tier")
	assert.Equal(t, int64(1<<20), cfg.localBytes)
}

// A bad value stops the runner at start with a message naming the variable.
func TestLoadConfigNamesTheBadVariable(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(secretFile, []byte("s3cret\n"), 0o600))
	base := func() map[string]string {
		return map[string]string{"APISIX_LISTEN_ADDRESS": "unix:/tmp/r.sock"}
	}
	keycloak := func() map[string]string {
		m := base()
		m["KEYCLOAK_URL"] = "https://sso.example.org"
		m["KEYCLOAK_REALM"] = "olapps"
		m["KEYCLOAK_CLIENT_ID"] = "identity-runner"
		m["KEYCLOAK_CLIENT_SECRET"] = "s3cret"
		return m
	}
	cases := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"no socket", map[string]string{}, "APISIX_LISTEN_ADDRESS"},
		{"tcp socket", map[string]string{"APISIX_LISTEN_ADDRESS": "127.0.0.1:9999"}, "APISIX_LISTEN_ADDRESS"},
		{"bad conf expire", with(base(), "APISIX_CONF_EXPIRE_TIME", "1h"), "APISIX_CONF_EXPIRE_TIME"},
		{"bad log level", with(base(), "RUNNER_LOG_LEVEL", "loud"), "RUNNER_LOG_LEVEL"},
		{"missing key file", with(base(), "RUNNER_SIGNING_KEY_FILE", "/nonexistent/key.pem"), "RUNNER_SIGNING_KEY_FILE"},
		{"metrics addr without port", with(base(), "RUNNER_METRICS_ADDR", "127.0.0.1"), "RUNNER_METRICS_ADDR"},
		{"bad pprof", with(with(base(), "RUNNER_METRICS_ADDR", "127.0.0.1:9542"), "RUNNER_PPROF", "yes"), "RUNNER_PPROF"},
		{"pprof without metrics", with(base(), "RUNNER_PPROF", "1"), "RUNNER_METRICS_ADDR"},
		{"bad grace", with(base(), "RUNNER_SHUTDOWN_GRACE", "soon"), "RUNNER_SHUTDOWN_GRACE"},
		{"bad redis url", with(with(base(), "REDIS_VALUE_SECRET", valueSecret), "REDIS_URL", "localhost:6379"), "REDIS_URL"},
		{"redis without value secret", with(base(), "REDIS_URL", "redis://localhost:6379/0"), "REDIS_VALUE_SECRET"},
		{"short value secret", with(with(base(), "REDIS_URL", "redis://localhost:6379/0"), "REDIS_VALUE_SECRET", "s3cret"), "want at least 32"},
		{"both value secrets", with(with(with(base(), "REDIS_URL", "redis://localhost:6379/0"), "REDIS_VALUE_SECRET", valueSecret),
			"REDIS_VALUE_SECRET_FILE", secretFile), "REDIS_VALUE_SECRET_FILE"},
		{"bad keycloak timeout", with(keycloak(), "KEYCLOAK_TIMEOUT", "3"), "KEYCLOAK_TIMEOUT"},
		{"bad local entries", with(base(), "CACHE_LOCAL_MAX_ENTRIES", "-1"), "CACHE_LOCAL_MAX_ENTRIES"},
		{"bad local bytes", with(base(), "CACHE_LOCAL_MAX_BYTES", "64MB"), "CACHE_LOCAL_MAX_BYTES"},
		{"zero local bytes", with(base(), "CACHE_LOCAL_MAX_BYTES", "0"), "CACHE_LOCAL_MAX_BYTES"},
		{"bad events interval", with(keycloak(), "KEYCLOAK_EVENTS_INTERVAL", "-1s"), "KEYCLOAK_EVENTS_INTERVAL"},
		{"keycloak url not http", with(keycloak(), "KEYCLOAK_URL", "sso.example.org"), "KEYCLOAK_URL"},
		{"keycloak without realm", with(keycloak(), "KEYCLOAK_REALM", ""), "KEYCLOAK_REALM"},
		{"keycloak without secret", with(keycloak(), "KEYCLOAK_CLIENT_SECRET", ""), "KEYCLOAK_CLIENT_SECRET"},
		{"both secrets", with(keycloak(), "KEYCLOAK_CLIENT_SECRET_FILE", secretFile), "KEYCLOAK_CLIENT_SECRET_FILE"},
		{"issuer without keycloak", with(base(), "KEYCLOAK_ISSUER", "https://sso.example.org/realms/olapps"), "KEYCLOAK_ISSUER"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadConfig(getenv(tc.env))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "s3cret", "errors never carry a secret")
		})
	}
}

func TestLoadConfigSecretFile(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(secretFile, []byte("s3cret\n"), 0o600))
	cfg, err := loadConfig(getenv(map[string]string{"APISIX_LISTEN_ADDRESS": "unix:/tmp/r.sock",
		"KEYCLOAK_URL": "https://sso.example.org/", "KEYCLOAK_REALM": "olapps", "KEYCLOAK_CLIENT_ID": "c",
		"KEYCLOAK_CLIENT_SECRET_FILE": secretFile, "RUNNER_LOG_LEVEL": "DEBUG"}))
	require.NoError(t, err)
	assert.Equal(t, "s3cret", cfg.keycloak.clientSecret)
	assert.Equal(t, "https://sso.example.org", cfg.keycloak.url)
	assert.Equal(t, slog.LevelDebug, cfg.logLevel)
}

// valueSecret is a REDIS_VALUE_SECRET of the required length.
const valueSecret = "0123456789abcdef0123456789abcdef"

func TestLoadConfigValueSecret(t *testing.T) {
	file := filepath.Join(t.TempDir(), "value-secret")
	require.NoError(t, os.WriteFile(file, []byte(valueSecret+"\n"), 0o600))
	cfg, err := loadConfig(getenv(map[string]string{"APISIX_LISTEN_ADDRESS": "unix:/tmp/r.sock",
		"REDIS_URL": "redis://localhost:6379/0", "REDIS_VALUE_SECRET_FILE": file}))
	require.NoError(t, err)
	assert.Equal(t, []byte(valueSecret), cfg.redisSecret)
	_, err = loadConfig(getenv(map[string]string{"APISIX_LISTEN_ADDRESS": "unix:/tmp/r.sock"}))
	require.NoError(t, err, "no Redis, no secret needed")
}

func with(m map[string]string, k, v string) map[string]string {
	m[k] = v
	return m
}

// Every variable the runner reads has a row in the environment table of
// docs/configuration.md: a mention elsewhere in the file (an example, a
// cross-reference) does not count.
func TestConfigurationDocumentsEveryVariable(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "configuration.md"))
	require.NoError(t, err)
	rows := environmentRows(t, string(doc))
	for _, v := range envVars {
		assert.True(t, slices.ContainsFunc(rows, func(row string) bool { return strings.Contains(row, "`"+v+"`") }),
			"docs/configuration.md has no row for %s in its environment table", v)
	}
}

// environmentRows returns the table rows of the section "## Process
// (environment)", header and separator rows left out.
func environmentRows(t *testing.T, doc string) []string {
	t.Helper()
	_, section, ok := strings.Cut(doc, "\n## Process (environment)\n")
	require.True(t, ok, `docs/configuration.md lost its "## Process (environment)" section`)
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	var rows []string
	for _, line := range strings.Split(section, "\n") {
		if strings.HasPrefix(line, "| `") {
			rows = append(rows, line)
		}
	}
	require.NotEmpty(t, rows, "the environment section of docs/configuration.md has no table")
	return rows
}

func TestMemoryLimit(t *testing.T) {
	env := func(v string) func(string) string {
		return getenv(map[string]string{"APISIX_LISTEN_ADDRESS": "unix:/tmp/r.sock", "RUNNER_MEMORY_LIMIT": v})
	}
	cfg, err := loadConfig(env("0"))
	require.NoError(t, err)
	assert.Zero(t, cfg.memoryLimit, "0 turns the limit off")
	cfg, err = loadConfig(env("536870912"))
	require.NoError(t, err)
	assert.Equal(t, int64(512<<20), cfg.memoryLimit)
	for _, bad := range []string{"1000", "-1", "256MiB", "lots"} {
		_, err := loadConfig(env(bad))
		require.Error(t, err, bad)
		assert.Contains(t, err.Error(), "RUNNER_MEMORY_LIMIT", bad)
	}
}

// Issue 19: every required variable that is missing is named at once, in a fixed order, a secret
// with its _FILE alternative.
func TestLoadConfigNamesEveryMissingVariable(t *testing.T) {
	env := map[string]string{"REDIS_URL": "redis://localhost:6379/0", "KEYCLOAK_URL": "https://sso.example.org"}
	want := "required variables not set: APISIX_LISTEN_ADDRESS (APISIX sets it when it starts the runner; make run sets it too); " +
		"REDIS_VALUE_SECRET or REDIS_VALUE_SECRET_FILE (with REDIS_URL: "
	for range 20 { // a map's order would show within a few runs
		_, err := loadConfig(getenv(env))
		require.Error(t, err)
		assert.True(t, strings.HasPrefix(err.Error(), want), err.Error())
		assert.True(t, strings.HasSuffix(err.Error(), "; KEYCLOAK_REALM (with KEYCLOAK_URL); KEYCLOAK_CLIENT_ID (with KEYCLOAK_URL); "+
			"KEYCLOAK_CLIENT_SECRET or KEYCLOAK_CLIENT_SECRET_FILE (with KEYCLOAK_URL)"), err.Error())
	}
	// A secret given through its file counts as given.
	secretFile := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(secretFile, []byte("s3cret\n"), 0o600))
	env = map[string]string{"APISIX_LISTEN_ADDRESS": "unix:/tmp/r.sock", "KEYCLOAK_URL": "https://sso.example.org",
		"KEYCLOAK_CLIENT_SECRET_FILE": secretFile}
	_, err := loadConfig(getenv(env))
	require.Error(t, err)
	assert.Equal(t, "required variables not set: KEYCLOAK_REALM (with KEYCLOAK_URL); KEYCLOAK_CLIENT_ID (with KEYCLOAK_URL)", err.Error())
}

// KEYCLOAK_REALM without KEYCLOAK_URL starts the runner (userinfo alone needs no admin client) with
// a warning saying what it does not do.
func TestLoadConfigWarnsOfKeycloakSettingsWithoutURL(t *testing.T) {
	cfg, err := loadConfig(getenv(map[string]string{"APISIX_LISTEN_ADDRESS": "unix:/tmp/r.sock", "KEYCLOAK_REALM": "olapps"}))
	require.NoError(t, err)
	require.Len(t, cfg.warnings, 1)
	assert.Contains(t, cfg.warnings[0], "KEYCLOAK_REALM set but KEYCLOAK_URL is not")
	assert.Contains(t, cfg.warnings[0], "orgsync routes answer 500")

	cfg, err = loadConfig(getenv(map[string]string{"APISIX_LISTEN_ADDRESS": "unix:/tmp/r.sock"}))
	require.NoError(t, err)
	assert.Empty(t, cfg.warnings)
}
