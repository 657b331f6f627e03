// Package kctest helps tests use the throwaway Keycloak that scripts/keycloak.sh
// starts: settings, user logins (the userinfo APISIX would forward) and admin
// changes made the way applications make them.
//
// Settings come from the environment (KEYCLOAK_TEST_URL, ...) or, when
// KEYCLOAK_TEST_URL is unset, from the env file the script writes
// (KEYCLOAK_TEST_ENV_FILE, default <repo>/.work/keycloak.env). When neither
// has them, tests are skipped, or fail when CI=true.
package kctest

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Settings describe the test Keycloak and the test realm.
type Settings struct {
	URL            string // base URL, e.g. http://127.0.0.1:41414
	Realm          string // test realm, e.g. olapps
	Issuer         string // URL + "/realms/" + Realm
	AdminUser      string // master realm admin (admin-cli)
	AdminPassword  string
	ClientID       string // the confidential client APISIX's openid-connect uses ("apisix")
	ClientSecret   string
	SAClientID     string // the runner's service-account client ("identity-runner")
	SAClientSecret string
}

var (
	loadOnce sync.Once
	loaded   *Settings
	loadErr  string
)

// Env returns the settings. Without them the test is skipped, or fails when CI=true.
func Env(t testing.TB) *Settings {
	t.Helper()
	loadOnce.Do(func() { loaded, loadErr = load() })
	if loaded == nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("kctest: no test Keycloak: %s (run scripts/keycloak.sh start)", loadErr)
		}
		t.Skipf("kctest: no test Keycloak: %s (run scripts/keycloak.sh start)", loadErr)
	}
	return loaded
}

func load() (*Settings, string) {
	get := os.Getenv
	if os.Getenv("KEYCLOAK_TEST_URL") == "" {
		path := os.Getenv("KEYCLOAK_TEST_ENV_FILE")
		if path == "" {
			root, ok := repoRoot()
			if !ok {
				return nil, "KEYCLOAK_TEST_URL is not set and the repository root was not found"
			}
			path = filepath.Join(root, ".work", "keycloak.env")
		}
		vals, err := readEnvFile(path)
		if err != nil {
			return nil, "KEYCLOAK_TEST_URL is not set and " + err.Error()
		}
		get = func(k string) string {
			if v := os.Getenv(k); v != "" {
				return v
			}
			return vals[k]
		}
	}
	s := &Settings{
		URL:            strings.TrimRight(get("KEYCLOAK_TEST_URL"), "/"),
		Realm:          orDefault(get("KEYCLOAK_TEST_REALM"), "olapps"),
		AdminUser:      orDefault(get("KEYCLOAK_TEST_ADMIN_USER"), "admin"),
		AdminPassword:  orDefault(get("KEYCLOAK_TEST_ADMIN_PASSWORD"), "admin"),
		ClientID:       orDefault(get("KEYCLOAK_TEST_CLIENT_ID"), "apisix"),
		ClientSecret:   orDefault(get("KEYCLOAK_TEST_CLIENT_SECRET"), "apisix-test-secret"),
		SAClientID:     orDefault(get("KEYCLOAK_TEST_SA_CLIENT_ID"), "identity-runner"),
		SAClientSecret: orDefault(get("KEYCLOAK_TEST_SA_CLIENT_SECRET"), "identity-runner-test-secret"),
	}
	if s.URL == "" {
		return nil, "KEYCLOAK_TEST_URL is empty"
	}
	s.Issuer = s.URL + "/realms/" + s.Realm
	return s, ""
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// repoRoot walks up from the working directory to the directory holding go.mod.
func repoRoot() (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

// readEnvFile reads KEY=VALUE lines; # starts a comment line.
func readEnvFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	vals := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		vals[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"'`)
	}
	return vals, sc.Err()
}
