package deploy

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/routecheck"
	"github.com/apisix-identity-runner/apisix-identity-runner/plugins/orgsync"
	"github.com/apisix-identity-runner/apisix-identity-runner/plugins/userinfo"
)

// parsers are our runner plugins, by the name routes use.
var parsers = map[string]interface {
	ParseConf([]byte) (any, error)
}{
	userinfo.Name: userinfo.New(userinfo.Deps{}),
	orgsync.Name:  orgsync.New(orgsync.Deps{}),
}

func TestApisixYAMLEndsWithEND(t *testing.T) {
	// APISIX standalone mode ignores a file whose last line is not #END (a half-written file).
	lines := strings.Split(strings.TrimRight(string(readFile(t, apisixYAML)), "\n"), "\n")
	assert.Equal(t, "#END", lines[len(lines)-1])
}

// Every runner plugin config parses with the plugin's own parser: a config
// that fails is not skipped by our plugins (they answer 500), but it breaks the
// route, and on other plugins the runner would skip it and fail open.
func TestEveryExtPluginConfParses(t *testing.T) {
	cfg := loadRoutes(t)
	// The invalidation route names the variable holding its HMAC secret; docker-compose sets it.
	t.Setenv("ORGSYNC_WEBHOOK_SECRET", "deploy-test-webhook-secret-0123456789")
	seen := 0
	for _, r := range cfg.Routes {
		for _, phase := range []string{"ext-plugin-pre-req", postReq, "ext-plugin-post-resp"} {
			p, ok := extPlugin(t, r, phase)
			if !ok {
				continue
			}
			require.NotEmpty(t, p.Conf, "route %s: an empty %s runs nothing", r.ID, phase)
			for i, c := range p.Conf {
				parser, ours := parsers[c.Name]
				require.True(t, ours, "route %s: %s conf[%d] names %q, which the runner does not have: it would be skipped",
					r.ID, phase, i, c.Name)
				t.Run(r.ID+"/"+c.Name, func(t *testing.T) {
					conf, err := parser.ParseConf([]byte(c.Value))
					require.NoError(t, err)
					withErr, ok := conf.(interface{ Err() error })
					require.True(t, ok, "%s config has no Err method", c.Name)
					require.NoError(t, withErr.Err(), "value %s", c.Value)
				})
				seen++
			}
		}
	}
	assert.GreaterOrEqual(t, seen, 4)
}

// Identity plugins run after openid-connect (post-req), never before it
// (pre-req) or on the response, and an identity route fails closed.
func TestIdentityPluginsArePostReqWithoutDegradation(t *testing.T) {
	for _, r := range loadRoutes(t).Routes {
		for _, phase := range []string{"ext-plugin-pre-req", "ext-plugin-post-resp"} {
			if p, ok := extPlugin(t, r, phase); ok {
				for _, c := range p.Conf {
					assert.NotContains(t, parsers, c.Name, "route %s: %s belongs in %s, not %s", r.ID, c.Name, postReq, phase)
				}
			}
		}
		p, ok := extPlugin(t, r, postReq)
		if !ok {
			continue
		}
		if p.AllowDegradation != nil {
			assert.False(t, *p.AllowDegradation, "route %s: allow_degradation lets requests through when the runner is down", r.ID)
		}
		// orgsync rewrites what userinfo verified: userinfo must come first on the same list.
		names := make([]string, 0, len(p.Conf))
		for _, c := range p.Conf {
			names = append(names, c.Name)
		}
		if i := slices.Index(names, orgsync.Name); i >= 0 && extConfValue(t, r, orgsync.Name)["invalidate"] != true {
			u := slices.Index(names, userinfo.Name)
			assert.True(t, u >= 0 && u < i, "route %s: orgsync must follow userinfo, got %v", r.ID, names)
		}
	}
}

// findRoute returns the first route for which match is true.
func findRoute(t *testing.T, routes []Route, what string, match func(Route) bool) Route {
	t.Helper()
	for _, r := range routes {
		if match(r) {
			return r
		}
	}
	t.Fatalf("conf/apisix.yaml has no %s", what)
	return Route{}
}

func TestApisixYAMLShowsEveryUse(t *testing.T) {
	routes := loadRoutes(t).Routes

	t.Run("app route", func(t *testing.T) {
		r := findRoute(t, routes, "route with openid-connect then userinfo and orgsync", func(r Route) bool {
			p, ok := extPlugin(t, r, postReq)
			if !ok || pluginConf(r, "openid-connect") == nil || len(p.Conf) != 2 {
				return false
			}
			return p.Conf[0].Name == userinfo.Name && p.Conf[1].Name == orgsync.Name
		})
		oidc := pluginConf(r, "openid-connect")
		assert.Equal(t, "openid profile email organization:*", oidc["scope"])
		assert.Equal(t, true, oidc["set_userinfo_header"])
		assert.Equal(t, true, oidc["set_access_token_header"])
		assert.Equal(t, false, oidc["access_token_in_authorization_header"])
		assert.NotEqual(t, "pass", oidc["unauth_action"])
		assert.Contains(t, oidc["discovery"], "/.well-known/openid-configuration")
		session, _ := oidc["session"].(map[string]any)
		assert.GreaterOrEqual(t, len(asString(session["secret"])), 16, "openid-connect needs session.secret (16+ chars)")
		ui := extConfValue(t, r, userinfo.Name)
		assert.NotEqual(t, false, ui["verify_token"], "the app route verifies the access token")
		assert.NotEqual(t, "anonymous", ui["on_invalid"])
		assert.NotNil(t, ui["assertion"], "the app route signs an assertion")
	})

	t.Run("JWKS route", func(t *testing.T) {
		r := findRoute(t, routes, `route with userinfo {"jwks": true}`, func(r Route) bool {
			return extConfValue(t, r, userinfo.Name)["jwks"] == true
		})
		assert.Nil(t, pluginConf(r, "openid-connect"), "apps fetch the key set without logging in")
	})

	t.Run("back-channel logout route", func(t *testing.T) {
		r := findRoute(t, routes, `route with userinfo {"backchannel_logout": true}`, func(r Route) bool {
			return extConfValue(t, r, userinfo.Name)["backchannel_logout"] == true
		})
		assert.Equal(t, []string{"POST"}, r.Methods)
		assert.Nil(t, pluginConf(r, "openid-connect"), "Keycloak posts without a login")
	})

	t.Run("invalidation route", func(t *testing.T) {
		r := findRoute(t, routes, `route with orgsync {"invalidate": true}`, func(r Route) bool {
			return extConfValue(t, r, orgsync.Name)["invalidate"] == true
		})
		assert.Equal(t, []string{"POST"}, r.Methods)
		assert.Equal(t, "ORGSYNC_WEBHOOK_SECRET", extConfValue(t, r, orgsync.Name)["secret_env"])
	})

	t.Run("acme-only route", func(t *testing.T) {
		r := findRoute(t, routes, `route with openid-connect then userinfo and orgsync {"require": {"org": "acme"}}`, func(r Route) bool {
			p, ok := extPlugin(t, r, postReq)
			if !ok || pluginConf(r, "openid-connect") == nil || len(p.Conf) != 2 ||
				p.Conf[0].Name != userinfo.Name || p.Conf[1].Name != orgsync.Name {
				return false
			}
			req, _ := extConfValue(t, r, orgsync.Name)["require"].(map[string]any)
			return req["org"] == "acme"
		})
		assert.Equal(t, "/acme/*", r.URI, "the route docker-compose.yml and the README point at")
		assert.Greater(t, r.Priority, 0, "above the catch-all app route")
		ui := extConfValue(t, r, userinfo.Name)
		assert.NotEqual(t, false, ui["verify_token"], "a rule needs a verified identity")
		assert.NotEqual(t, "anonymous", ui["on_invalid"])
	})

	t.Run("anonymous route", func(t *testing.T) {
		r := findRoute(t, routes, "route with openid-connect unauth_action pass and userinfo on_invalid anonymous", func(r Route) bool {
			return pluginConf(r, "openid-connect")["unauth_action"] == "pass" &&
				extConfValue(t, r, userinfo.Name)["on_invalid"] == "anonymous"
		})
		assert.NotEqual(t, "/*", r.URI, "the anonymous route must not be the catch-all")
	})
}

func TestRoutesPointAtDeclaredUpstreams(t *testing.T) {
	cfg := loadRoutes(t)
	ids := map[string]bool{}
	for _, u := range cfg.Upstreams {
		require.NotEmpty(t, u.Nodes, "upstream %s has no nodes", u.ID)
		ids[u.ID] = true
	}
	seen := map[string]bool{}
	for _, r := range cfg.Routes {
		require.NotEmpty(t, r.ID)
		assert.False(t, seen[r.ID], "route id %s twice", r.ID)
		seen[r.ID] = true
		assert.NotEmpty(t, r.URI, "route %s", r.ID)
		if r.Upstream == nil {
			assert.True(t, ids[r.UpstreamID], "route %s: upstream_id %q is not declared", r.ID, r.UpstreamID)
		}
	}
}

func TestConfigYAMLStandaloneMode(t *testing.T) {
	c := loadYAML(t, configYAML)
	deployment, _ := c["deployment"].(map[string]any)
	assert.Equal(t, "data_plane", deployment["role"])
	dp, _ := deployment["role_data_plane"].(map[string]any)
	assert.Equal(t, "yaml", dp["config_provider"])

	ext, _ := c["ext-plugin"].(map[string]any)
	assert.Equal(t, []any{runnerPath, "run"}, ext["cmd"])
	assert.Nil(t, ext["path_for_test"], "path_for_test is for development: APISIX would not start the runner")
	assert.True(t, bytes.Contains(readFile(t, dockerfile), []byte(runnerPath)), "the Dockerfile must install the runner at %s", runnerPath)
}

// The plugins list in config.yaml replaces APISIX's default list: every plugin
// a route uses must be in it, or APISIX refuses the route.
func TestConfigYAMLEnablesEveryPluginTheRoutesUse(t *testing.T) {
	var enabled []string
	for _, p := range loadYAML(t, configYAML)["plugins"].([]any) {
		enabled = append(enabled, asString(p))
	}
	for _, want := range []string{"openid-connect", "ext-plugin-pre-req", postReq} {
		assert.Contains(t, enabled, want)
	}
	for _, r := range loadRoutes(t).Routes {
		for name := range r.Plugins {
			assert.Contains(t, enabled, name, "route %s uses %s", r.ID, name)
		}
	}
}

// nginx passes the runner only the variables listed in nginx_config.envs.
func TestNginxEnvsListEveryRunnerVariable(t *testing.T) {
	c := loadYAML(t, configYAML)
	nginx, _ := c["nginx_config"].(map[string]any)
	var listed []string
	for _, v := range nginx["envs"].([]any) {
		listed = append(listed, asString(v))
	}
	want := configurableVars(t)
	// APISIX's workers resolve conf/apisix.yaml's ${{VAR}} references: those must be listed too.
	doc, err := routecheck.Decode(readFile(t, apisixYAML))
	require.NoError(t, err)
	for _, v := range routecheck.VarNames(doc) {
		assert.Contains(t, listed, v, "conf/apisix.yaml reads %s, which nginx_config.envs does not list", v)
		want = append(want, v)
	}
	for _, v := range want {
		assert.Contains(t, listed, v, "%s is read by the runner but not in nginx_config.envs: it would never reach it", v)
	}
	for _, v := range listed {
		assert.Contains(t, want, v, "nginx_config.envs lists %s, which the runner does not read", v)
	}
	for _, v := range setByAPISIX {
		assert.NotContains(t, listed, v, "APISIX sets %s itself", v)
	}
}

func asString(v any) string {
	s, _ := v.(string)
	return s
}
