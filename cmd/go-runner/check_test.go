package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/logtest"
)

const (
	goodUserinfo = `{"name":"userinfo","value":"{\"issuer\":\"https://sso.example.org/realms/r\",\"audience\":\"apisix\"}"}`
	goodOrgsync  = `{"name":"orgsync","value":"{\"fresh_ttl\":\"30s\"}"}`
	oidc         = `"openid-connect":{"client_id":"apisix","client_secret":"s","discovery":"https://sso.example.org/d","session":{"secret":"0123456789abcdef0123"}}`
)

func route(plugins string) string {
	return `{"id":"r1","uri":"/*","plugins":{` + plugins + `}}`
}

func postReq(confs ...string) string {
	return `"ext-plugin-post-req":{"conf":[` + strings.Join(confs, ",") + `]}`
}

func check(t *testing.T, doc string, args ...string) (int, string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "route.json")
	require.NoError(t, os.WriteFile(file, []byte(doc), 0o600))
	var out, errOut bytes.Buffer
	code := runCheck(append(args, file), strings.NewReader(""), &out, &errOut)
	return code, out.String() + errOut.String()
}

func TestCheckFindsEachMistake(t *testing.T) {
	cases := []struct {
		name, doc, want string
	}{
		{"misspelled plugin name", route(oidc + "," + postReq(strings.Replace(goodUserinfo, "userinfo", "user-info", 1))),
			`no plugin "user-info"`},
		{"conf the plugin refuses", route(oidc + "," + postReq(`{"name":"orgsync","value":"{\"fresh_tll\":\"30s\"}"}`)),
			`fresh_tll`},
		{"identity plugin before the login", route(oidc + `,"ext-plugin-pre-req":{"conf":[` + goodUserinfo + `]}`),
			`belongs in ext-plugin-post-req`},
		{"allow_degradation", route(oidc + `,"ext-plugin-post-req":{"allow_degradation":true,"conf":[` + goodUserinfo + `]}`),
			`allow_degradation`},
		{"orgsync without userinfo first", route(oidc + "," + postReq(goodOrgsync, goodUserinfo)),
			`orgsync must follow userinfo`},
		{"empty conf list", route(oidc + `,"ext-plugin-post-req":{"conf":[]}`), `runs nothing`},
		{"login without session secret", route(`"openid-connect":{"client_id":"a","client_secret":"s","discovery":"https://x/d"},` + postReq(goodUserinfo)),
			`session.secret`},
		{"userinfo without audience", route(oidc + "," + postReq(`{"name":"userinfo","value":"{\"issuer\":\"https://sso.example.org/realms/r\"}"}`)),
			`"audience" is required`},
		{"value not a string", route(oidc + "," + postReq(`{"name":"userinfo","value":{"issuer":"x"}}`)), `"value" must be`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out := check(t, tc.doc)
			assert.Equal(t, checkProblems, code, out)
			assert.Contains(t, out, tc.want)
			assert.Contains(t, out, "route r1")
		})
	}
}

func TestCheckPassesAGoodRoute(t *testing.T) {
	code, out := check(t, route(oidc+","+postReq(goodUserinfo, goodOrgsync)))
	assert.Equal(t, checkOK, code, out)
	assert.Contains(t, out, "go-runner check: 1 route, no problem, 0 warnings\n")

	// The invalidation endpoint runs orgsync alone.
	code, out = check(t, route(postReq(`{"name":"orgsync","value":"{\"invalidate\":true,\"secret_env\":\"HOOK_SECRET\"}"}`)))
	assert.Equal(t, checkOK, code, out)
}

// A route that accepts a token of any client of the realm passes, and is
// named on a warning line; the routes that check the client are not.
func TestCheckWarnsOfRoutesAcceptingAnyClient(t *testing.T) {
	anyClient := `{"name":"userinfo","value":"{\"issuer\":\"https://sso.example.org/realms/r\",\"any_audience\":true}"}`
	doc := `{"routes":[` + strings.Replace(route(oidc+","+postReq(anyClient, goodOrgsync)), `"r1"`, `"open"`, 1) + `,` +
		route(oidc+","+postReq(goodUserinfo)) + `]}`
	code, out := check(t, doc)
	assert.Equal(t, checkOK, code, out)
	assert.Contains(t, out, `route open: warning: ext-plugin-post-req conf[0]: userinfo: "any_audience": true: `+
		`accepts a token issued to any client of https://sso.example.org/realms/r`)
	assert.Equal(t, 1, strings.Count(out, "warning:"), out)
	assert.NotContains(t, out, "route r1:")
	assert.Contains(t, out, "go-runner check: 2 routes, no problem, 1 warning\n")

	// A warning is no problem, and hides none.
	bad := `{"routes":[` + route(oidc+`,"ext-plugin-post-req":{"allow_degradation":true,"conf":[`+anyClient+`]}`) + `]}`
	code, out = check(t, bad)
	assert.Equal(t, checkProblems, code, out)
	assert.Contains(t, out, "allow_degradation")
	assert.Contains(t, out, "warning:")
}

func TestCheckSecretEnvAgainstConfigYAML(t *testing.T) {
	config := filepath.Join(t.TempDir(), "config.yaml")
	require.NoError(t, os.WriteFile(config, []byte("nginx_config:\n  envs: [OTHER]\n"), 0o600))
	doc := route(postReq(`{"name":"orgsync","value":"{\"invalidate\":true,\"secret_env\":\"HOOK_SECRET\"}"}`))
	code, out := check(t, doc, "-config", config)
	assert.Equal(t, checkProblems, code, out)
	assert.Contains(t, out, "HOOK_SECRET is not listed in nginx_config.envs")

	require.NoError(t, os.WriteFile(config, []byte("nginx_config:\n  envs: [HOOK_SECRET]\n"), 0o600))
	code, out = check(t, doc, "-config", config)
	assert.Equal(t, checkOK, code, out)
}

func TestCheckAdminAPIDump(t *testing.T) {
	dump := `{"total":2,"list":[{"key":"/apisix/routes/good","value":` + route(oidc+","+postReq(goodUserinfo)) + `},
		{"key":"/apisix/routes/bad","value":{"uri":"/b","plugins":{` + postReq(`{"name":"orgsyn","value":"{}"}`) + `}}}]}`
	code, out := check(t, dump)
	assert.Equal(t, checkProblems, code, out)
	assert.Contains(t, out, `route bad: ext-plugin-post-req conf[0]: the runner has no plugin "orgsyn"`)
	assert.NotContains(t, out, "route r1:")
}

func TestCheckTheRepositorysConf(t *testing.T) {
	var out, errOut bytes.Buffer
	code := runCheck([]string{"-config", filepath.Join("..", "..", "conf", "config.yaml"),
		filepath.Join("..", "..", "conf", "apisix.yaml")}, nil, &out, &errOut)
	assert.Equal(t, checkOK, code, out.String()+errOut.String())
}

func TestCheckUsageErrors(t *testing.T) {
	var out, errOut bytes.Buffer
	assert.Equal(t, checkUsage, runCheck(nil, nil, &out, &errOut), "no file")
	assert.Equal(t, checkUsage, runCheck([]string{filepath.Join(t.TempDir(), "missing.json")}, nil, &out, &errOut))
	code, msg := check(t, `{"not":"routes"}`)
	assert.Equal(t, checkUsage, code, msg)
	code, msg = check(t, `{"routes": [{"id": "x", "plugins": {"openid-connect": {"session": {"secret": "${{NO_SUCH_VAR_SET}}"}}}}]}`)
	assert.Equal(t, checkUsage, code)
	assert.Contains(t, msg, "NO_SUCH_VAR_SET")
	assert.Equal(t, checkOK, runCheck([]string{"-h"}, nil, &out, &errOut))
}

func TestCheckReadsStdin(t *testing.T) {
	var out, errOut bytes.Buffer
	code := runCheck([]string{"-"}, strings.NewReader(route(oidc+","+postReq(goodUserinfo))), &out, &errOut)
	assert.Equal(t, checkOK, code, out.String()+errOut.String())
}

// signingRoute is a route whose userinfo trusts realm and signs for aud.
func signingRoute(id, realm, aud string) string {
	conf := fmt.Sprintf(`{\"issuer\":\"https://sso.example.org/realms/%s\",\"audience\":\"apisix\",\"assertion\":{\"audience\":\"%s\"}}`, realm, aud)
	return `{"id":"` + id + `","uri":"/` + id + `/*","plugins":{` + oidc + "," +
		postReq(`{"name":"userinfo","value":"`+conf+`"}`) + `}}`
}

// Two realms may each have a user of the same id: one assertion audience
// signed for both lets an app take one for the other.
func TestCheckOneAudienceForTwoRealms(t *testing.T) {
	code, out := check(t, `{"routes":[`+signingRoute("a", "alpha", "app")+`,`+signingRoute("b", "beta", "app")+`]}`)
	assert.Equal(t, checkProblems, code, out)
	assert.Contains(t, out, `route b: ext-plugin-post-req conf[0]: userinfo: assertion iss "apisix-identity-runner" aud "app" `+
		`is also signed on route a for users of "https://sso.example.org/realms/alpha"; here for users of "https://sso.example.org/realms/beta"`)

	unverified := `{"id":"u","uri":"/u/*","plugins":{` + oidc + "," +
		postReq(`{"name":"userinfo","value":"{\"verify_token\":false,\"assertion\":{\"audience\":\"app\"}}"}`) + `}}`
	code, out = check(t, `{"routes":[`+signingRoute("a", "alpha", "app")+`,`+unverified+`]}`)
	assert.Equal(t, checkProblems, code, out)
	assert.Contains(t, out, "no verified token (verify_token false)")

	for name, doc := range map[string]string{
		"one realm, two routes": `{"routes":[` + signingRoute("a", "alpha", "app") + `,` + signingRoute("b", "alpha", "app") + `]}`,
		"one audience per realm": `{"routes":[` + signingRoute("a", "alpha", "app-alpha") + `,` +
			signingRoute("b", "beta", "app-beta") + `]}`,
	} {
		code, out := check(t, doc)
		assert.Equal(t, checkOK, code, "%s: %s", name, out)
	}
}

func TestCheckOneAudienceForTwoRealmsAcrossFiles(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.json"), filepath.Join(dir, "b.json")
	require.NoError(t, os.WriteFile(a, []byte(signingRoute("a", "alpha", "app")), 0o600))
	require.NoError(t, os.WriteFile(b, []byte(signingRoute("b", "beta", "app")), 0o600))
	var out, errOut bytes.Buffer
	code := runCheck([]string{a, b}, strings.NewReader(""), &out, &errOut)
	assert.Equal(t, checkProblems, code, out.String()+errOut.String())
	assert.Contains(t, out.String(), b+": route b: ")
	assert.Contains(t, out.String(), "also signed on "+a+": route a for users of")
}

func TestCheckAccessRules(t *testing.T) {
	ruled := `{"name":"orgsync","value":"{\"require\":{\"org\":\"acme\"}}"}`
	code, out := check(t, route(oidc+","+postReq(goodUserinfo, ruled)))
	assert.Equal(t, checkOK, code, out)

	unverified := `{"name":"userinfo","value":"{\"verify_token\":false}"}`
	code, out = check(t, route(oidc+","+postReq(unverified, ruled)))
	assert.Equal(t, checkProblems, code, out)
	assert.Contains(t, out, "an access rule needs a plugin before it")

	code, out = check(t, route(oidc+","+postReq(ruled)))
	assert.Equal(t, checkProblems, code, out)
	assert.Contains(t, out, "an access rule needs a plugin before it")

	pathTenant := `{"name":"orgsync","value":"{\"tenant\":{\"path\":\"/orgs/{org}\"}}"}`
	code, out = check(t, route(oidc+","+postReq(goodUserinfo, pathTenant)))
	assert.Equal(t, checkOK, code, out)
	code, out = check(t, route(oidc+`,"proxy-rewrite":{"regex_uri":["^/o/(.*)","/orgs/$1"]},`+postReq(goodUserinfo, pathTenant)))
	assert.Equal(t, checkProblems, code, out)
	assert.Contains(t, out, "a path tenant cannot follow proxy-rewrite")

	for _, bad := range []string{
		`{\"require\":{\"any\":[{\"orgg\":\"acme\"}]}}`,
		`{\"require\":{\"realm_role\":\"admin\"}}`,
		`{\"tenant\":{\"path\":\"/orgs/{org}/x\"}}`,
	} {
		code, out = check(t, route(oidc+","+postReq(goodUserinfo, `{"name":"orgsync","value":"`+bad+`"}`)))
		assert.Equal(t, checkProblems, code, out)
	}
}

// Issue 19: a JSON file's syntax error is the JSON parser's, placed by line and column, not YAML's.
func TestCheckReportsJSONSyntaxAsJSON(t *testing.T) {
	code, out := check(t, "{\n  \"uri\": \"/*\",\n  \"plugins\": {\"a\": 1,, }\n}\n")
	assert.Equal(t, checkUsage, code, out)
	assert.Contains(t, out, "JSON: line 3, column 22: invalid character ','", out)
	assert.NotContains(t, out, "yaml", out)
	// Text after the object: YAML would take it, APISIX's JSON parser does not.
	code, out = check(t, route(oidc+","+postReq(goodUserinfo))+"}")
	assert.Equal(t, checkUsage, code, out)
	assert.Contains(t, out, "JSON: line 1", out)
}

// The check's output is its findings: the plugins' parsers log "route config refused" in the
// runner, not here.
func TestCheckPrintsNoLogLines(t *testing.T) {
	logs := logtest.Capture(t, slog.LevelDebug)
	code, out := check(t, route(oidc+","+postReq(`{"name":"orgsync","value":"{\"fresh_tll\":\"30s\"}"}`)))
	assert.Equal(t, checkProblems, code, out)
	assert.Empty(t, logs.String())
	assert.NotContains(t, out, "route config refused", out)
}

// Every problem of a conf, one a line, not only the first.
func TestCheckReportsEveryProblemOfAConf(t *testing.T) {
	conf := `{"name":"userinfo","value":"{\"isuer\":\"https://sso.example.org/realms/r\",\"audience\":\"apisix\",\"Leeway\":\"5s\",\"audience\":\"x\"}"}`
	code, out := check(t, route(oidc+","+postReq(conf)))
	assert.Equal(t, checkProblems, code, out)
	for _, want := range []string{`userinfo: unknown key "isuer"`, `userinfo: unknown key "Leeway" (keys are case-sensitive: did you mean "leeway"?)`,
		`userinfo: key "audience" is given twice`} {
		assert.Contains(t, out, "route r1: ext-plugin-post-req conf[0]: "+want+"\n")
	}
	assert.Contains(t, out, "go-runner check: 3 problems in 1 route\n")
}

// Every value problem of a conf too, each plugin's validation going on past the first.
func TestCheckReportsEveryValueProblemOfAConf(t *testing.T) {
	userinfoConf := `{"name":"userinfo","value":"{\"issuer\":\"https://sso.example.org/realms/r\",\"leeway\":\"10m\",\"on_invalid\":\"drop\"}"}`
	code, out := check(t, route(oidc+","+postReq(userinfoConf)))
	assert.Equal(t, checkProblems, code, out)
	for _, want := range []string{`userinfo: "audience" is required when "verify_token" is true: name the client`,
		`userinfo: "on_invalid" "drop": want "reject" or "anonymous"`, `userinfo: "leeway" "10m0s": want between "0s" and "5m"`} {
		assert.Contains(t, out, "route r1: ext-plugin-post-req conf[0]: "+want, out)
	}
	assert.Contains(t, out, "go-runner check: 3 problems in 1 route\n")

	orgsyncConf := `{"name":"orgsync","value":"{\"fresh_ttl\":\"48h\",\"shape\":\"tree\",\"on_keycloak_error\":\"retry\"}"}`
	code, out = check(t, route(oidc+","+postReq(goodUserinfo, orgsyncConf)))
	assert.Equal(t, checkProblems, code, out)
	for _, want := range []string{`orgsync: "fresh_ttl" "48h0m0s": want between "1s" and "24h"`,
		`orgsync: "shape" "tree": want "auto", "list", "map" or "map_attributes"`,
		`orgsync: "on_keycloak_error" "retry": want "stale" or "deny"`} {
		assert.Contains(t, out, "route r1: ext-plugin-post-req conf[1]: "+want+"\n", out)
	}
	// fresh_ttl refused, stale_ttl is not also said to be below it.
	assert.NotContains(t, out, "stale_ttl", out)
	assert.Contains(t, out, "go-runner check: 3 problems in 1 route\n")
}

// A misspelled name is one problem: not also "orgsync must follow userinfo" on the same list.
func TestCheckMisspelledNameHasNoKnockOn(t *testing.T) {
	code, out := check(t, route(oidc+","+postReq(strings.Replace(goodUserinfo, "userinfo", "usrinfo", 1), goodOrgsync)))
	assert.Equal(t, checkProblems, code, out)
	assert.Contains(t, out, `no plugin "usrinfo"`)
	assert.NotContains(t, out, "must follow")
	assert.Contains(t, out, "go-runner check: 1 problem in 1 route\n")
}

func TestCheckSummary(t *testing.T) {
	assert.Equal(t, "1 route, no problem, 0 warnings", checkSummary(checkOK, 0, 0, 1))
	assert.Equal(t, "3 routes, no problem, 1 warning", checkSummary(checkOK, 0, 1, 3))
	assert.Equal(t, "1 problem in 1 route", checkSummary(checkProblems, 1, 0, 1))
	assert.Equal(t, "2 problems and 1 warning in 2 routes", checkSummary(checkProblems, 2, 1, 2))
	assert.Empty(t, checkSummary(checkUsage, 0, 0, 0))
}
