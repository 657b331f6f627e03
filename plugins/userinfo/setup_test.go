package userinfo

import (
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"net/http/httptest"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/logtest"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/runnertest"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/tokentest"
)

func TestParse(t *testing.T) {
	cases := []struct {
		name    string
		json    string
		wantErr string
	}{
		{"issue example", `{"issuer":"https://sso.example.org/realms/olapps","verify_token":true,"audience":"apisix","on_invalid":"reject",
			"require_user":false,"claim_headers":{"X-User-Id":"sub","X-User-Email":"email","X-User-Orgs":"organization"},
			"assertion":{"header":"X-Identity-Assertion","audience":"mitxonline","ttl":"60s"}}`, ""},
		{"minimal", `{"issuer":"https://sso.example.org/realms/olapps","audience":"apisix"}`, ""},
		{"jwks route", `{"jwks":true}`, ""},
		{"no verification", `{"verify_token":false}`, ""},
		{"unknown key", `{"issuer":"https://sso.example.org/realms/olapps","audience":"apisix","isuser":"x"}`, `unknown key "isuser"`},
		{"missing issuer", `{}`, `"issuer" is required`},
		{"issuer not a URL", `{"issuer":"sso.example.org"}`, `"issuer"`},
		{"bad on_invalid", `{"issuer":"https://sso.example.org/r","audience":"apisix","on_invalid":"allow"}`, `"on_invalid" "allow"`},
		{"verify_token wrong type", `{"issuer":"https://sso.example.org/r","audience":"apisix","verify_token":"yes"}`, `verify_token`},
		{"ttl as number", `{"issuer":"https://sso.example.org/r","audience":"apisix","assertion":{"audience":"a","ttl":60}}`, `assertion.ttl`},
		{"ttl too long", `{"issuer":"https://sso.example.org/r","audience":"apisix","assertion":{"audience":"a","ttl":"2h"}}`, `"assertion.ttl" "2h0m0s"`},
		{"assertion without audience", `{"issuer":"https://sso.example.org/r","audience":"apisix","assertion":{}}`, `"assertion.audience" is required`},
		{"assertion header is an input header", `{"issuer":"https://sso.example.org/r","audience":"apisix","assertion":{"audience":"a","header":"X_Userinfo"}}`, `"assertion.header"`},
		{"claim header over X-Userinfo", `{"issuer":"https://sso.example.org/r","audience":"apisix","claim_headers":{"x-userinfo":"sub"}}`, `claim_headers.x-userinfo`},
		{"claim header duplicate after folding", `{"issuer":"https://sso.example.org/r","audience":"apisix","claim_headers":{"X-A":"sub","x_a":"email"}}`, `same header`},
		{"claim header bad name", `{"issuer":"https://sso.example.org/r","audience":"apisix","claim_headers":{"X A":"sub"}}`, `may hold only`},
		{"empty claim", `{"issuer":"https://sso.example.org/r","audience":"apisix","claim_headers":{"X-A":""}}`, `claim name is empty`},
		{"jwks with other keys", `{"jwks":true,"issuer":"https://sso.example.org/r"}`, `takes no other key`},
		{"leeway too big", `{"issuer":"https://sso.example.org/r","audience":"apisix","leeway":"1h"}`, `"leeway"`},
		{"max_userinfo_bytes too small", `{"issuer":"https://sso.example.org/r","audience":"apisix","max_userinfo_bytes":10}`, `"max_userinfo_bytes" 10`},
		{"any client, said so", `{"issuer":"https://sso.example.org/r","any_audience":true}`, ""},
		{"no audience", `{"issuer":"https://sso.example.org/r"}`, `"audience" is required`},
		{"empty audience is not any", `{"issuer":"https://sso.example.org/r","audience":""}`, `"audience" is required`},
		{"any_audience false is no audience", `{"issuer":"https://sso.example.org/r","any_audience":false}`, `"audience" is required`},
		{"star is not a wildcard", `{"issuer":"https://sso.example.org/r","audience":"*"}`, `not a wildcard`},
		{"audience with a space", `{"issuer":"https://sso.example.org/r","audience":"apisix "}`, `"audience" "apisix "`},
		{"audience and any_audience", `{"issuer":"https://sso.example.org/r","audience":"apisix","any_audience":true}`, `give one`},
		{"audience without verification", `{"verify_token":false,"audience":"apisix"}`, `need "verify_token": true`},
		{"any_audience without verification", `{"verify_token":false,"any_audience":true}`, `need "verify_token": true`},
		{"jwks with any_audience", `{"jwks":true,"any_audience":true}`, `takes no other key`},
		{"not an object", `[]`, `JSON object`},
		{"empty", ``, `empty config`},
		{"trailing", `{"issuer":"https://sso.example.org/r","audience":"apisix"} {}`, `unexpected data`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := testPlugin.parse([]byte(tc.json))
			if tc.wantErr == "" {
				require.NoError(t, err)
				require.NotNil(t, c)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.wantErr)
			assert.True(t, strings.HasPrefix(err.Error(), "userinfo: "), err.Error())
		})
	}
}

func TestDefaults(t *testing.T) {
	c, err := testPlugin.parse([]byte(`{"issuer":"https://sso.example.org/realms/olapps","audience":"apisix","assertion":{"audience":"mitxonline"}}`))
	require.NoError(t, err)
	assert.True(t, *c.VerifyToken)
	assert.Equal(t, OnInvalidReject, c.OnInvalid)
	assert.Equal(t, "https://sso.example.org/realms/olapps/protocol/openid-connect/certs", c.JWKSURI)
	assert.Equal(t, map[string]string{"X-User-Id": "sub", "X-User-Email": "email", "X-User-Orgs": "organization"}, c.ClaimHeaders)
	assert.Equal(t, "X-Identity-Assertion", c.Assertion.Header)
	assert.Equal(t, 60*time.Second, c.Assertion.TTL.Std())
	assert.Equal(t, 30*time.Second, c.Leeway.Std())

	c, err = testPlugin.parse([]byte(`{"issuer":"https://sso.example.org/realms/olapps","audience":"apisix","claim_headers":{}}`))
	require.NoError(t, err)
	assert.Empty(t, c.ClaimHeaders, "{} means no claim headers")
}

// A bad config must not be skipped by the runner (that passes requests on
// unchecked): ParseConf succeeds and every request answers 500; the log (not
// the client) names the key.
func TestBadConfigFailsClosed(t *testing.T) {
	logs := captureLogs(t)
	p := testPlugin
	v, err := p.ParseConf([]byte(`{"issuer":"https://sso.example.org/r","audience":"apisix","on_invalid":"pass"}`))
	require.NoError(t, err)
	assert.Contains(t, logs.String(), "on_invalid", "the log names the key")
	for i := 0; i < 3; i++ {
		w := httptest.NewRecorder()
		p.RequestFilter(v, w, runnertest.NewRequest(uint32(i), 1, map[string]string{"x-userinfo": "e30="}))
		assert.Equal(t, http.StatusInternalServerError, w.Code)
		assert.JSONEq(t, `{"error":"Internal Server Error","reason":"misconfigured"}`, w.Body.String(),
			"the client gets the reason, never the config")
	}
}

// A conf with several value problems names each, in one log line, and the
// route still answers 500; one problem does not hide the next.
func TestEveryProblemOfAConf(t *testing.T) {
	logs := captureLogs(t)
	v, err := testPlugin.ParseConf([]byte(`{"issuer":"sso.example.org","leeway":"10m","on_invalid":"pass",` +
		`"claim_headers":{"X-B":"","X A":"sub","X-Userinfo":"sub"},"assertion":{"audience":"","ttl":"2h"}}`))
	require.NoError(t, err)
	cerr := v.(*Conf).Err()
	require.Error(t, cerr)
	joined, ok := cerr.(interface{ Unwrap() []error })
	require.True(t, ok, "the problems are joined, each its own: %v", cerr)
	var got []string
	for _, e := range joined.Unwrap() {
		got = append(got, e.Error())
	}
	want := []string{
		`userinfo: "issuer" "sso.example.org": want an http(s) URL`,
		`userinfo: "audience" is required when "verify_token" is true: name the client whose tokens the route accepts ` +
			`(openid-connect's client_id), or set "any_audience": true to accept a token of any client of the realm`,
		`userinfo: "on_invalid" "pass": want "reject" or "anonymous"`,
		`userinfo: "leeway" "10m0s": want between "0s" and "5m"`,
		`userinfo: "assertion.audience" is required: name the app that accepts the assertion`,
		`userinfo: "assertion.ttl" "2h0m0s": want between "1s" and "1h"`,
		`userinfo: "claim_headers.X A": header name "X A" may hold only letters, digits, '-' and '_'`,
		`userinfo: "claim_headers.X-B": claim name is empty`,
		`userinfo: "claim_headers.X-Userinfo": X-Userinfo is an input header and cannot carry a claim`,
	}
	assert.Equal(t, want, got)
	assert.Equal(t, 1, strings.Count(logs.String(), "route config refused"), logs.String())
	for _, key := range []string{"issuer", "audience", "on_invalid", "leeway", "assertion.audience", "assertion.ttl", "X-B", "X-Userinfo"} {
		assert.Contains(t, logs.String(), key, "the one log line lists every problem")
	}
	w := httptest.NewRecorder()
	testPlugin.RequestFilter(v, w, runnertest.NewRequest(1, 1, map[string]string{"x-userinfo": "e30="}))
	assert.Equal(t, http.StatusInternalServerError, w.Code)
}

// A route that does not name its client and does not opt out answers 500
// for every request, the token of the right client included: the runner
// would skip a conf it refuses, and a skipped userinfo lets every client in.
func TestNoAudienceFailsClosed(t *testing.T) {
	is := tokentest.NewIssuer(t)
	for name, conf := range map[string]string{
		"left out": fmt.Sprintf(`{"issuer":%q}`, is.URL),
		"empty":    fmt.Sprintf(`{"issuer":%q,"audience":""}`, is.URL),
	} {
		t.Run(name, func(t *testing.T) {
			logs := captureLogs(t)
			v, err := testPlugin.ParseConf([]byte(conf))
			require.NoError(t, err, "the runner must not skip the plugin")
			assert.Contains(t, logs.String(), "audience", "the log names the key")
			w := httptest.NewRecorder()
			testPlugin.RequestFilter(v, w, runnertest.NewRequest(requestIDs.Add(1), tokens.Add(1),
				loggedIn(is, "u-alice", map[string]any{"sub": "u-alice"})))
			assert.Equal(t, http.StatusInternalServerError, w.Code)
			assert.JSONEq(t, `{"error":"Internal Server Error","reason":"misconfigured"}`, w.Body.String())
		})
	}
}

// Only a conf that opts out says it takes any client; go-runner check
// prints that.
func TestWarnings(t *testing.T) {
	c, err := testPlugin.parse([]byte(`{"issuer":"https://sso.example.org/r","any_audience":true}`))
	require.NoError(t, err)
	assert.Equal(t, []string{`"any_audience": true: accepts a token issued to any client of https://sso.example.org/r`},
		c.Warnings())
	for _, conf := range []string{`{"issuer":"https://sso.example.org/r","audience":"apisix"}`, `{"jwks":true}`,
		`{"verify_token":false}`} {
		c, err := testPlugin.parse([]byte(conf))
		require.NoError(t, err)
		assert.Empty(t, c.Warnings(), conf)
	}
	v, err := testPlugin.ParseConf([]byte(`{"issuer":"https://sso.example.org/r","any_audience":true,"leeway":"1h"}`))
	require.NoError(t, err)
	assert.Empty(t, v.(*Conf).Warnings(), "a refused conf is a problem, not a warning")
}

// captureLogs sends the default slog logger to a buffer for the test.
func captureLogs(t *testing.T) *logtest.Buffer { return logtest.Capture(t, slog.LevelDebug) }

// Config keys are matched exactly and once: a case twin or a duplicate
// cannot turn verification off, and an explicit zero stays zero.
func TestConfigKeysExactAndZeroValuesKept(t *testing.T) {
	for name, in := range map[string]string{
		"case twin":     `{"issuer":"https://sso.example.org/r","audience":"apisix","verify_token":true,"Verify_Token":false}`,
		"duplicate":     `{"issuer":"https://sso.example.org/r","audience":"apisix","verify_token":true,"verify_token":false}`,
		"upper case":    `{"issuer":"https://sso.example.org/r","audience":"apisix","VERIFY_TOKEN":false}`,
		"nested twin":   `{"issuer":"https://sso.example.org/r","audience":"apisix","assertion":{"audience":"a","Audience":"b"}}`,
		"zero max size": `{"issuer":"https://sso.example.org/r","audience":"apisix","max_userinfo_bytes":0}`,
		"empty header":  `{"issuer":"https://sso.example.org/r","audience":"apisix","assertion":{"audience":"a","header":""}}`,
		"zero ttl":      `{"issuer":"https://sso.example.org/r","audience":"apisix","assertion":{"audience":"a","ttl":"0s"}}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := testPlugin.parse([]byte(in))
			assert.Error(t, err)
		})
	}
	c, err := testPlugin.parse([]byte(`{"issuer":"https://sso.example.org/r","audience":"apisix","leeway":"0s"}`))
	require.NoError(t, err)
	assert.Equal(t, time.Duration(0), c.Leeway.Std(), "an explicit zero leeway is zero")
}

// The README documents every config key (the table is checked against the
// struct so the two cannot drift).
func TestReadmeDocumentsEveryKey(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	for _, typ := range []reflect.Type{reflect.TypeOf(Conf{}), reflect.TypeOf(AssertionConf{}), reflect.TypeOf(OnRevokedConf{})} {
		prefix := map[string]string{"AssertionConf": "assertion.", "OnRevokedConf": "on_revoked."}[typ.Name()]
		for i := 0; i < typ.NumField(); i++ {
			tag, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
			if tag == "" || tag == "-" {
				continue
			}
			assert.Contains(t, string(readme), "| "+prefix+tag+" |", "README.md lacks a row for %s%s", prefix, tag)
		}
	}
}
