package deploy

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/routecheck"
	"github.com/apisix-identity-runner/apisix-identity-runner/plugins/orgsync"
	"github.com/apisix-identity-runner/apisix-identity-runner/plugins/userinfo"
)

// checkOptions are the rules `go-runner check` applies, with the plugins' own
// parsers and the variables conf/config.yaml passes to the runner.
func checkOptions(t testing.TB) routecheck.Options {
	t.Helper()
	doc, err := routecheck.Decode(readFile(t, configYAML))
	require.NoError(t, err)
	envs, err := routecheck.Envs(doc)
	require.NoError(t, err)
	o := routecheck.Options{Parsers: map[string]routecheck.Parser{}, Envs: envs,
		Order:  []string{userinfo.Name, orgsync.Name},
		Exempt: func(name string, v map[string]any) bool { return name == orgsync.Name && v["invalidate"] == true }}
	for name, p := range parsers {
		o.Parsers[name] = func(value []byte) ([]string, error) {
			c, err := p.ParseConf(value)
			if err != nil {
				return nil, err
			}
			if e, ok := c.(interface{ Err() error }); ok && e.Err() != nil {
				return nil, e.Err()
			}
			if w, ok := c.(interface{ Warnings() []string }); ok {
				return w.Warnings(), nil
			}
			return nil, nil
		}
	}
	return o
}

func TestApisixYAMLPassesTheRouteCheck(t *testing.T) {
	doc, err := routecheck.Decode(readFile(t, apisixYAML))
	require.NoError(t, err)
	doc, err = routecheck.ExpandVars(doc, func(string) string { return "" })
	require.NoError(t, err)
	routes, err := routecheck.Load(doc)
	require.NoError(t, err)
	require.NotEmpty(t, routes)
	assert.Empty(t, routecheck.Check(routes, checkOptions(t)))
}

// fence matches a fenced code block and its language.
var fence = regexp.MustCompile("(?ms)^```(json|ya?ml)[ \t]*\n(.*?)^```")

// Every route example in the Markdown files (JSON in the Admin API form, or
// apisix.yaml snippets) passes the rules conf/apisix.yaml passes, including
// openid-connect's session.secret, which APISIX >= 3.14 requires.
func TestMarkdownRouteExamples(t *testing.T) {
	o := checkOptions(t)
	examples := 0
	err := filepath.WalkDir(root(t), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root(t) && (strings.HasPrefix(d.Name(), ".") || d.Name() == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".md") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root(t), path)
		for _, m := range fence.FindAllStringSubmatch(string(b), -1) {
			body := m[2]
			if !strings.Contains(body, "ext-plugin-") && !strings.Contains(body, "openid-connect") {
				continue
			}
			examples++
			doc, err := routecheck.Decode([]byte(body))
			if !assert.NoError(t, err, "%s: a %s example does not parse:\n%s", rel, m[1], body) {
				continue
			}
			routes, err := routecheck.Load(doc)
			if !assert.NoError(t, err, "%s:\n%s", rel, body) {
				continue
			}
			for _, p := range routecheck.Check(routes, o) {
				t.Errorf("%s: %s example: %s", rel, m[1], p)
			}
		}
		return nil
	})
	require.NoError(t, err)
	// README.md, plugins/userinfo/README.md and plugins/orgsync/README.md each show at least one.
	assert.GreaterOrEqual(t, examples, 5)
}

// The rule the README's example once broke: a login route without a session
// secret, which APISIX >= 3.14 answers with 400.
func TestRouteCheckWantsASessionSecret(t *testing.T) {
	o := checkOptions(t)
	route := func(oidc string) []routecheck.Route {
		doc, err := routecheck.Decode([]byte(`{"uri":"/*","plugins":{"openid-connect":` + oidc + `,
			"ext-plugin-post-req":{"conf":[{"name":"userinfo","value":"{\"issuer\":\"https://sso.example.org/realms/r\",\"audience\":\"apisix\"}"}]}}}`))
		require.NoError(t, err)
		routes, err := routecheck.Load(doc)
		require.NoError(t, err)
		return routes
	}
	problems := routecheck.Check(route(`{"client_id":"apisix","client_secret":"s","discovery":"https://sso.example.org/.well-known/openid-configuration"}`), o)
	require.Len(t, problems, 1)
	assert.Contains(t, problems[0].Message, "session.secret")
	assert.Len(t, routecheck.Check(route(`{"session":{"secret":"short"}}`), o), 1)
	assert.Empty(t, routecheck.Check(route(`{"bearer_only":true}`), o), "bearer_only needs no session")
	assert.Empty(t, routecheck.Check(route(`{"session":{"secret":"0123456789abcdef"}}`), o))
}
