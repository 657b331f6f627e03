package deploy

import (
	"encoding/json"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	yaml "go.yaml.in/yaml/v3"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/assertion"
	"github.com/apisix-identity-runner/apisix-identity-runner/plugins/orgsync"
	"github.com/apisix-identity-runner/apisix-identity-runner/plugins/userinfo"
)

var wantServices = []string{apisixService, "keycloak", "redis", "upstream"}

func TestComposeServices(t *testing.T) {
	p := loadCompose(t)
	for _, name := range wantServices {
		_, ok := p.Services[name]
		assert.True(t, ok, "service %s is missing", name)
	}
	for name, s := range p.Services {
		t.Run(name, func(t *testing.T) {
			hc := s.HealthCheck
			require.NotNil(t, hc, "no healthcheck")
			assert.False(t, hc.Disable)
			require.NotEmpty(t, hc.Test)
			assert.Contains(t, []string{"CMD", "CMD-SHELL"}, hc.Test[0])
			assert.Greater(t, len(hc.Test), 1)

			for dep, d := range s.DependsOn {
				assert.Equal(t, serviceHealthy, d.Condition, "depends_on %s", dep)
				assert.Contains(t, p.Services, dep)
			}

			if s.Build != nil {
				checkBuild(t, s.Build)
			} else {
				checkPinned(t, s.Image)
			}
		})
	}
	apisix := p.Services[apisixService]
	for _, dep := range []string{"keycloak", "redis", "upstream"} {
		assert.Contains(t, apisix.DependsOn, dep, "apisix starts after %s is healthy", dep)
	}
}

// checkBuild: the service is built from a Dockerfile of this repository whose
// target stage exists.
func checkBuild(t *testing.T, b *types.BuildConfig) {
	t.Helper()
	rel, err := filepath.Rel(root(t), b.Context)
	require.NoError(t, err)
	assert.False(t, strings.HasPrefix(rel, ".."), "build context %s is outside the repository", b.Context)
	df := b.Dockerfile
	if df == "" {
		df = "Dockerfile"
	}
	if !filepath.IsAbs(df) {
		df = filepath.Join(b.Context, df)
	}
	_, err = os.Stat(df)
	require.NoError(t, err, "Dockerfile")
	if b.Target != "" {
		assert.Contains(t, parseDockerfile(t, df).stages, b.Target, "build target")
	}
}

// checkPinned: a tag other than latest, or a digest.
func checkPinned(t *testing.T, image string) {
	t.Helper()
	require.NotEmpty(t, image, "neither image nor build")
	if strings.Contains(image, "@sha256:") {
		return
	}
	name := image[strings.LastIndex(image, "/")+1:]
	i := strings.LastIndex(name, ":")
	require.Positive(t, i, "image %s has no tag", image)
	tag := name[i+1:]
	assert.NotEqual(t, "latest", tag, "image %s", image)
	assert.Regexp(t, `\d`, tag, "image %s: tag names no version", image)
}

// The apisix container passes the runner everything it needs, with values the
// runner accepts (TestRunnerStartsWithComposeEnvironment starts it with them).
func TestComposePassesTheRunnerItsVariables(t *testing.T) {
	p := loadCompose(t)
	e := env(p.Services[apisixService])
	for _, v := range []string{"KEYCLOAK_URL", "KEYCLOAK_REALM", "KEYCLOAK_CLIENT_ID", "REDIS_URL",
		"RUNNER_METRICS_ADDR", "RUNNER_SIGNING_KEY_FILE"} {
		assert.NotEmpty(t, e[v], "%s is not set on the apisix service", v)
	}
	assert.True(t, e["KEYCLOAK_CLIENT_SECRET"] != "" || e["KEYCLOAK_CLIENT_SECRET_FILE"] != "", "no Keycloak client secret")
	assert.Equal(t, "http://keycloak:8080", e["KEYCLOAK_URL"])
	assert.Equal(t, "redis://redis:6379/0", e["REDIS_URL"])
	assert.Equal(t, "true", e["APISIX_STAND_ALONE"])

	runnerVars := runnerEnvVars(t)
	for name := range e {
		if strings.HasPrefix(name, "RUNNER_") || strings.HasPrefix(name, "KEYCLOAK_") || strings.HasPrefix(name, "REDIS_") {
			assert.Contains(t, runnerVars, name, "the apisix service sets %s, which the runner does not read", name)
		}
	}
	for _, v := range setByAPISIX {
		assert.NotContains(t, e, v, "APISIX sets %s itself", v)
	}

	// orgsync looks up only users of tokens from KEYCLOAK_ISSUER: the issuer
	// Keycloak announces (KC_HOSTNAME), which every route running orgsync trusts.
	issuer := env(p.Services["keycloak"])["KC_HOSTNAME"] + "/realms/" + e["KEYCLOAK_REALM"]
	assert.Equal(t, issuer, e["KEYCLOAK_ISSUER"])
	for _, r := range loadRoutes(t).Routes {
		if extConfValue(t, r, orgsync.Name) != nil && extConfValue(t, r, orgsync.Name)["invalidate"] != true {
			assert.Equal(t, issuer, extConfValue(t, r, "userinfo")["issuer"], "route %s", r.ID)
		}
	}

	// Secrets the routes name (secret_env) are set, and reach the runner.
	cfg := loadYAML(t, configYAML)
	nginx, _ := cfg["nginx_config"].(map[string]any)
	for _, r := range loadRoutes(t).Routes {
		if name := asString(extConfValue(t, r, orgsync.Name)["secret_env"]); name != "" {
			assert.NotEmpty(t, e[name], "route %s needs %s", r.ID, name)
			assert.Contains(t, nginx["envs"], any(name), "route %s needs %s in nginx_config.envs", r.ID, name)
		}
	}
}

// The signing key is a compose secret whose file the runner can load.
func TestComposeSigningKeyIsAMountedDemoKey(t *testing.T) {
	p := loadCompose(t)
	s := p.Services[apisixService]
	keyFile := env(s)["RUNNER_SIGNING_KEY_FILE"]
	require.True(t, strings.HasPrefix(keyFile, "/run/secrets/"), "RUNNER_SIGNING_KEY_FILE %s: want a compose secret", keyFile)
	name := strings.TrimPrefix(keyFile, "/run/secrets/")
	assert.True(t, slices.ContainsFunc(s.Secrets, func(c types.ServiceSecretConfig) bool { return c.Source == name }),
		"service apisix does not mount secret %s", name)
	secret, ok := p.Secrets[name]
	require.True(t, ok, "secret %s is not declared", name)
	keys, err := assertion.LoadFile(secret.File)
	require.NoError(t, err)
	assert.NotEmpty(t, keys.KeyID())
	b, err := os.ReadFile(secret.File)
	require.NoError(t, err)
	assert.Contains(t, string(b), "DEMO KEY", "a committed key must say it is a demo key")
}

func TestComposeMountsTheConfFiles(t *testing.T) {
	p := loadCompose(t)
	mounts := func(service string) map[string]string {
		out := map[string]string{}
		for _, v := range p.Services[service].Volumes {
			out[v.Target] = v.Source
			assert.True(t, v.ReadOnly, "%s: %s should be read-only", service, v.Target)
			_, err := os.Stat(v.Source)
			assert.NoError(t, err, "%s mounts %s", service, v.Source)
		}
		return out
	}
	a := mounts(apisixService)
	assert.Equal(t, repoPath(t, configYAML), a["/usr/local/apisix/conf/config.yaml"])
	assert.Equal(t, repoPath(t, apisixYAML), a["/usr/local/apisix/conf/apisix.yaml"])
	k := mounts("keycloak")
	var imported bool
	for target, source := range k {
		if strings.HasPrefix(target, "/opt/keycloak/data/import/") && strings.HasSuffix(source, ".json") {
			imported = true
		}
	}
	assert.True(t, imported, "keycloak imports no realm")
	assert.Contains(t, strings.Join(p.Services["keycloak"].Command, " "), "--import-realm")
}

// Realm is the part of a Keycloak realm export these tests read.
type Realm struct {
	Realm                string `json:"realm"`
	OrganizationsEnabled bool   `json:"organizationsEnabled"`
	AdminEventsEnabled   bool   `json:"adminEventsEnabled"`
	Clients              []struct {
		ClientID               string            `json:"clientId"`
		Secret                 string            `json:"secret"`
		RedirectURIs           []string          `json:"redirectUris"`
		ServiceAccountsEnabled bool              `json:"serviceAccountsEnabled"`
		StandardFlowEnabled    bool              `json:"standardFlowEnabled"`
		DefaultClientScopes    []string          `json:"defaultClientScopes"`
		OptionalClientScopes   []string          `json:"optionalClientScopes"`
		Attributes             map[string]string `json:"attributes"`
	} `json:"clients"`
	Users []struct {
		Username               string              `json:"username"`
		ServiceAccountClientID string              `json:"serviceAccountClientId"`
		ClientRoles            map[string][]string `json:"clientRoles"`
	} `json:"users"`
	Organizations []struct {
		Alias   string `json:"alias"`
		Members []struct {
			Username string `json:"username"`
		} `json:"members"`
	} `json:"organizations"`
}

// The demo realm, docker-compose.yml and conf/apisix.yaml agree: realm name,
// client ids and secrets, issuer, redirect URIs, the runner's roles.
func TestDemoRealmMatchesComposeAndRoutes(t *testing.T) {
	p := loadCompose(t)
	var realmFile string
	for _, v := range p.Services["keycloak"].Volumes {
		if strings.HasPrefix(v.Target, "/opt/keycloak/data/import/") {
			realmFile = v.Source
		}
	}
	require.NotEmpty(t, realmFile)
	b, err := os.ReadFile(realmFile)
	require.NoError(t, err)
	e := env(p.Services[apisixService])
	kc := env(p.Services["keycloak"])
	var realm Realm
	require.NoError(t, json.Unmarshal(expandRealm(b, kc), &realm))

	assert.Equal(t, e["KEYCLOAK_REALM"], realm.Realm)
	assert.True(t, realm.OrganizationsEnabled, "organizationsEnabled")
	assert.True(t, realm.AdminEventsEnabled, "adminEventsEnabled")

	clients := map[string]int{}
	for i, c := range realm.Clients {
		clients[c.ClientID] = i
	}
	// The runner's service account: its secret, and exactly the least-privilege roles.
	i, ok := clients[e["KEYCLOAK_CLIENT_ID"]]
	require.True(t, ok, "realm has no client %s", e["KEYCLOAK_CLIENT_ID"])
	sa := realm.Clients[i]
	assert.True(t, sa.ServiceAccountsEnabled)
	assert.False(t, sa.StandardFlowEnabled, "the runner's client needs no login flow")
	assert.Equal(t, e["KEYCLOAK_CLIENT_SECRET"], sa.Secret)
	var roles []string
	for _, u := range realm.Users {
		if u.ServiceAccountClientID == sa.ClientID {
			roles = u.ClientRoles["realm-management"]
		}
	}
	assert.ElementsMatch(t, []string{"manage-realm", "view-users", "view-events"}, roles)

	// Demo users and organizations.
	var users []string
	for _, u := range realm.Users {
		users = append(users, u.Username)
	}
	assert.Subset(t, users, []string{"alice", "bob"})
	orgs := map[string][]string{}
	for _, o := range realm.Organizations {
		for _, m := range o.Members {
			orgs[o.Alias] = append(orgs[o.Alias], m.Username)
		}
	}
	assert.Equal(t, []string{"alice", "bob"}, orgs["acme"])
	assert.Equal(t, []string{"bob"}, orgs["globex"], "alice starts outside globex: the demo adds her")

	issuer := strings.TrimSuffix(kc["KC_HOSTNAME"], "/") + "/realms/" + realm.Realm
	for _, r := range loadRoutes(t).Routes {
		if oidc := pluginConf(r, "openid-connect"); oidc != nil {
			i, ok := clients[asString(oidc["client_id"])]
			require.True(t, ok, "route %s: realm has no client %v", r.ID, oidc["client_id"])
			c := realm.Clients[i]
			assert.Equal(t, c.Secret, oidc["client_secret"], "route %s: client secret", r.ID)
			assert.True(t, c.StandardFlowEnabled, "route %s: login needs the standard flow", r.ID)
			assert.True(t, slices.Contains(c.DefaultClientScopes, "organization") || slices.Contains(c.OptionalClientScopes, "organization"),
				"client %s lacks the organization scope", c.ClientID)
			assert.Equal(t, e["KEYCLOAK_URL"]+"/realms/"+realm.Realm+"/.well-known/openid-configuration", oidc["discovery"],
				"route %s: APISIX reaches Keycloak as the runner does", r.ID)
			if ru := asString(oidc["redirect_uri"]); ru != "" {
				assert.True(t, slices.ContainsFunc(c.RedirectURIs, func(p string) bool { return redirectMatches(p, ru) }),
					"route %s: redirect_uri %s is not allowed by %v", r.ID, ru, c.RedirectURIs)
			}
		}
		if ui := extConfValue(t, r, userinfo.Name); ui != nil && ui["jwks"] != true {
			assert.Equal(t, issuer, ui["issuer"], "route %s: tokens are issued by KC_HOSTNAME", r.ID)
			assert.Equal(t, e["KEYCLOAK_URL"]+"/realms/"+realm.Realm+"/protocol/openid-connect/certs", ui["jwks_uri"],
				"route %s: the runner fetches keys on the compose network", r.ID)
			if oidc := pluginConf(r, "openid-connect"); oidc != nil {
				// Keycloak names the client a token was issued to in azp: the
				// route accepts what its own login gets, not another app's tokens.
				assert.Equal(t, oidc["client_id"], ui["audience"], "route %s: audience is the login's client", r.ID)
			}
		}
	}
}

// Keycloak posts the apisix client's logout tokens to the back-channel
// logout route, on the compose network, and the route checks them for that
// client of that realm.
func TestDemoRealmSendsLogoutTokensToTheRoute(t *testing.T) {
	p := loadCompose(t)
	var realmFile string
	for _, v := range p.Services["keycloak"].Volumes {
		if strings.HasPrefix(v.Target, "/opt/keycloak/data/import/") {
			realmFile = v.Source
		}
	}
	b, err := os.ReadFile(realmFile)
	require.NoError(t, err)
	kc := env(p.Services["keycloak"])
	var realm Realm
	require.NoError(t, json.Unmarshal(expandRealm(b, kc), &realm))
	r := findRoute(t, loadRoutes(t).Routes, `route with userinfo {"backchannel_logout": true}`, func(r Route) bool {
		return extConfValue(t, r, userinfo.Name)["backchannel_logout"] == true
	})
	ui := extConfValue(t, r, userinfo.Name)
	var found bool
	for _, c := range realm.Clients {
		if c.ClientID != ui["audience"] {
			continue
		}
		found = true
		assert.Equal(t, "http://"+apisixService+":9080"+r.URI, c.Attributes["backchannel.logout.url"])
		assert.Equal(t, "true", c.Attributes["backchannel.logout.session.required"], "logout tokens name the session (sid)")
	}
	assert.True(t, found, "realm has no client %v", ui["audience"])
	assert.Equal(t, strings.TrimSuffix(kc["KC_HOSTNAME"], "/")+"/realms/"+realm.Realm, ui["issuer"])
}

func redirectMatches(pattern, uri string) bool {
	if p, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(uri, p)
	}
	return pattern == uri
}

// The demo upstream verifies assertions against the JWKS route, for the
// audience the app route signs for.
func TestUpstreamVerifiesWhatTheAppRouteSigns(t *testing.T) {
	p := loadCompose(t)
	e := env(p.Services["upstream"])
	u, err := url.Parse(e["JWKS_URL"])
	require.NoError(t, err)
	assert.Equal(t, apisixService+":9080", u.Host)
	routes := loadRoutes(t).Routes
	jwks := findRoute(t, routes, "JWKS route", func(r Route) bool { return extConfValue(t, r, userinfo.Name)["jwks"] == true })
	assert.Equal(t, jwks.URI, u.Path)

	var audiences, realms []any
	for _, r := range routes {
		conf := extConfValue(t, r, userinfo.Name)
		if a, ok := conf["assertion"].(map[string]any); ok {
			audiences = append(audiences, a["audience"])
			realms = append(realms, conf["issuer"])
		}
	}
	require.NotEmpty(t, audiences)
	for i, a := range audiences {
		assert.Equal(t, e["ASSERTION_AUDIENCE"], a)
		assert.Equal(t, e["ASSERTION_TOKEN_ISSUER"], realms[i], "the upstream expects the realm the routes trust")
	}

	cfg := loadRoutes(t)
	var nodes []string
	for _, up := range cfg.Upstreams {
		for n := range up.Nodes {
			nodes = append(nodes, n)
		}
	}
	assert.Contains(t, nodes, "upstream"+e["LISTEN_ADDR"], "APISIX proxies to the upstream service")
}

// Each secret is one variable of the shell running `docker compose`, and
// every service that needs it gets the same value: set them all to values
// of our own and no demo value is left anywhere in the stack, and the
// parties of each secret (the runner and the realm's service account;
// openid-connect and the realm's login client) still agree.
func TestComposeSecretsAreOneVariableEach(t *testing.T) {
	ours := map[string]string{
		"KEYCLOAK_CLIENT_SECRET":     "ours-runner-client-secret",
		"APISIX_OIDC_CLIENT_SECRET":  "ours-oidc-client-secret",
		"APISIX_OIDC_SESSION_SECRET": "ours-session-secret-0123456789",
		"ORGSYNC_WEBHOOK_SECRET":     "ours-webhook-secret",
		"KEYCLOAK_ADMIN_PASSWORD":    "ours-admin-password",
	}
	keyFile := filepath.Join(t.TempDir(), "key.pem")
	environ := types.Mapping{"ASSERTION_SIGNING_KEY_FILE": keyFile}
	for k, v := range ours {
		environ[k] = v
	}
	p := loadComposeWith(t, environ)
	e := env(p.Services[apisixService])
	kc := env(p.Services["keycloak"])

	assert.Equal(t, ours["KEYCLOAK_CLIENT_SECRET"], e["KEYCLOAK_CLIENT_SECRET"])
	assert.Equal(t, ours["ORGSYNC_WEBHOOK_SECRET"], e["ORGSYNC_WEBHOOK_SECRET"])
	assert.Equal(t, ours["KEYCLOAK_ADMIN_PASSWORD"], kc["KC_BOOTSTRAP_ADMIN_PASSWORD"])
	assert.Equal(t, keyFile, p.Secrets["assertion_signing_key"].File)

	// The realm as Keycloak imports it in the keycloak container.
	var realmFile string
	for _, v := range p.Services["keycloak"].Volumes {
		if strings.HasPrefix(v.Target, "/opt/keycloak/data/import/") {
			realmFile = v.Source
		}
	}
	raw, err := os.ReadFile(realmFile)
	require.NoError(t, err)
	imported := expandRealm(raw, kc)
	var realm Realm
	require.NoError(t, json.Unmarshal(imported, &realm))
	secrets := map[string]string{}
	for _, c := range realm.Clients {
		secrets[c.ClientID] = c.Secret
	}
	assert.Equal(t, e["KEYCLOAK_CLIENT_SECRET"], secrets[e["KEYCLOAK_CLIENT_ID"]], "the runner logs in as the realm's service account")

	// conf/apisix.yaml as APISIX resolves it in the apisix container.
	routes := loadRoutesWith(t, func(k string) string { return e[k] })
	var resolved []string
	for _, r := range routes.Routes {
		if oidc := pluginConf(r, "openid-connect"); oidc != nil {
			assert.Equal(t, ours["APISIX_OIDC_CLIENT_SECRET"], oidc["client_secret"], "route %s", r.ID)
			assert.Equal(t, secrets[asString(oidc["client_id"])], oidc["client_secret"], "route %s: the realm's client agrees", r.ID)
			session, _ := oidc["session"].(map[string]any)
			assert.Equal(t, ours["APISIX_OIDC_SESSION_SECRET"], session["secret"], "route %s", r.ID)
			resolved = append(resolved, r.ID)
		}
	}
	assert.NotEmpty(t, resolved)

	// No demo default survives anywhere.
	stack, err := yaml.Marshal(map[string]any{"apisix": e, "keycloak": kc, "routes": routes})
	require.NoError(t, err)
	for _, demo := range []string{"apisix-demo-secret", "identity-runner-demo-secret", "orgsync-demo-webhook-secret",
		"admin-demo-password", "demo-session-secret"} {
		assert.NotContains(t, string(stack), demo)
		assert.NotContains(t, string(imported), demo)
	}
}

// The runner's metrics listener (and pprof, when on) is published on the
// host's loopback only.
func TestComposeMetricsPortIsLocal(t *testing.T) {
	p := loadCompose(t)
	s := p.Services[apisixService]
	_, port, err := net.SplitHostPort(env(s)["RUNNER_METRICS_ADDR"])
	require.NoError(t, err)
	found := false
	for _, pc := range s.Ports {
		if strconv.Itoa(int(pc.Target)) == port {
			found = true
			assert.Equal(t, "127.0.0.1", pc.HostIP, "the metrics port is published on %q", pc.HostIP)
		}
	}
	assert.True(t, found, "the metrics port %s is not published", port)
}

// docker-compose.yml's header names every route a browser logs in to
// (openid-connect) by its address, the acme-only route among them.
func TestComposeHeaderNamesTheBrowserRoutes(t *testing.T) {
	header := string(readFile(t, composeFile))
	header = header[:strings.Index(header, "\nname:")]
	n := 0
	for _, r := range loadRoutes(t).Routes {
		if pluginConf(r, "openid-connect") == nil {
			continue
		}
		n++
		addr := "http://localhost:9080" + strings.TrimSuffix(r.URI, "*") + " "
		assert.Contains(t, header, addr, "route %s (%s)", r.ID, r.URI)
	}
	assert.GreaterOrEqual(t, n, 3, "the app, public and acme-only routes")
}
