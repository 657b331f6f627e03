package conf

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testConf has the field kinds route configs use: durations (top level and
// nested), numbers, strings, lists and a nested object.
type testConf struct {
	FreshTTL  Duration `json:"fresh_ttl,omitempty"`
	StaleTTL  Duration `json:"stale_ttl,omitempty"`
	MaxOrgs   int      `json:"max_orgs,omitempty"`
	Realm     string   `json:"realm,omitempty"`
	Enabled   bool     `json:"enabled,omitempty"`
	Headers   []string `json:"headers,omitempty"`
	Assertion struct {
		TTL      Duration `json:"ttl,omitempty"`
		Audience string   `json:"audience,omitempty"`
	} `json:"assertion"`
	Optional *struct {
		Timeout Duration `json:"timeout,omitempty"`
	} `json:"optional,omitempty"`
	Claims map[string]string `json:"claims,omitempty"`
}

func TestDurationUnmarshal(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    time.Duration
		wantErr string
	}{
		{name: "seconds", in: `"30s"`, want: 30 * time.Second},
		{name: "minutes", in: `"10m"`, want: 10 * time.Minute},
		{name: "compound", in: `"1h30m"`, want: 90 * time.Minute},
		{name: "milliseconds", in: `"250ms"`, want: 250 * time.Millisecond},
		{name: "surrounding whitespace", in: " \"5s\"\n", want: 5 * time.Second},
		{name: "bare number refused", in: `30`, wantErr: `must be a string such as "30s", got 30`},
		{name: "float refused", in: `1.5`, wantErr: "must be a string"},
		{name: "bool refused", in: `true`, wantErr: "must be a string"},
		{name: "object refused", in: `{"s":1}`, wantErr: "must be a string"},
		{name: "not a duration", in: `"abc"`, wantErr: `duration "abc"`},
		{name: "empty string", in: `""`, wantErr: `duration ""`},
		{name: "number without unit in a string", in: `"30"`, wantErr: `duration "30"`},
		{name: "empty input", in: ``, wantErr: "must be a string"},
		{name: "broken string", in: `"30s`, wantErr: "duration"},
		{name: "long garbage is truncated", in: `"` + strings.Repeat("x", 100) + `"`, wantErr: "..."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Duration(7)
			err := d.UnmarshalJSON([]byte(tt.in))
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				assert.Equal(t, Duration(7), d, "a refused value must leave the duration untouched")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, d.Std())
		})
	}
}

func TestDurationMarshalRoundTrip(t *testing.T) {
	for _, in := range []time.Duration{0, time.Second, 90 * time.Minute, 1500 * time.Microsecond} {
		t.Run(in.String(), func(t *testing.T) {
			b, err := json.Marshal(Duration(in))
			require.NoError(t, err)
			assert.Equal(t, `"`+in.String()+`"`, string(b))
			assert.Equal(t, in.String(), Duration(in).String())
			var back Duration
			require.NoError(t, json.Unmarshal(b, &back))
			assert.Equal(t, in, back.Std())
		})
	}
}

func TestDecodeStrict(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		check func(t *testing.T, c *testConf)
		// wantErr lists substrings the error must contain.
		wantErr []string
	}{
		{
			name: "all fields",
			in: `{"fresh_ttl":"30s","stale_ttl":"10m","max_orgs":5,"realm":"example",` +
				`"enabled":true,"headers":["a","b"],"assertion":{"ttl":"1m","audience":"app"},` +
				`"optional":{"timeout":"2s"}}`,
			check: func(t *testing.T, c *testConf) {
				assert.Equal(t, 30*time.Second, c.FreshTTL.Std())
				assert.Equal(t, 10*time.Minute, c.StaleTTL.Std())
				assert.Equal(t, 5, c.MaxOrgs)
				assert.Equal(t, "example", c.Realm)
				assert.True(t, c.Enabled)
				assert.Equal(t, []string{"a", "b"}, c.Headers)
				assert.Equal(t, time.Minute, c.Assertion.TTL.Std())
				assert.Equal(t, "app", c.Assertion.Audience)
				require.NotNil(t, c.Optional)
				assert.Equal(t, 2*time.Second, c.Optional.Timeout.Std())
			},
		},
		{
			name:  "empty object keeps zero values",
			in:    `{}`,
			check: func(t *testing.T, c *testConf) { assert.Equal(t, testConf{}, *c) },
		},
		{
			name:  "trailing whitespace is fine",
			in:    "{\"realm\":\"x\"}\n\t ",
			check: func(t *testing.T, c *testConf) { assert.Equal(t, "x", c.Realm) },
		},
		{name: "unknown key named", in: `{"fresh_tll":"30s"}`, wantErr: []string{"unknown key", "fresh_tll"}},
		{name: "unknown key beside good ones", in: `{"realm":"x","bogus":1}`, wantErr: []string{"unknown key", "bogus"}},
		{name: "unknown nested key named", in: `{"assertion":{"tll":"1m"}}`, wantErr: []string{"unknown key", "tll"}},
		{name: "duration given a number names the key", in: `{"fresh_ttl":30}`, wantErr: []string{`"fresh_ttl"`, `"30s"`}},
		{name: "duration given garbage names the key", in: `{"stale_ttl":"soon"}`, wantErr: []string{`"stale_ttl"`, "soon"}},
		{name: "duration given empty string names the key", in: `{"fresh_ttl":""}`, wantErr: []string{`"fresh_ttl"`}},
		{name: "key in other case refused, naming both", in: `{"Fresh_TTL":"30s"}`, wantErr: []string{`"Fresh_TTL"`, "case-sensitive", `"fresh_ttl"`}},
		{name: "nested key in other case refused", in: `{"assertion":{"TTL":"1m"}}`, wantErr: []string{`"assertion.TTL"`, "case-sensitive"}},
		{name: "case twin cannot override a key", in: `{"enabled":true,"Enabled":false}`, wantErr: []string{`"Enabled"`}},
		{name: "duplicate key refused", in: `{"enabled":true,"enabled":false}`, wantErr: []string{`"enabled"`, "twice"}},
		{name: "duplicate nested key refused", in: `{"assertion":{"ttl":"1m","ttl":"2m"}}`, wantErr: []string{`"assertion.ttl"`, "twice"}},
		{name: "duplicate key in a map refused", in: `{"claims":{"X-A":"sub","X-A":"email"}}`, wantErr: []string{`"claims.X-A"`, "twice"}},
		{name: "nested duration names the path", in: `{"assertion":{"ttl":60}}`, wantErr: []string{`"assertion.ttl"`}},
		{name: "duration under pointer struct names the path", in: `{"optional":{"timeout":"x"}}`, wantErr: []string{`"optional.timeout"`}},
		{name: "number given a string names the key", in: `{"max_orgs":"5"}`, wantErr: []string{`"max_orgs"`, "a number", "string"}},
		{name: "string given a number names the key", in: `{"realm":5}`, wantErr: []string{`"realm"`, "a string", "number"}},
		{name: "list given a string names the key", in: `{"headers":"a"}`, wantErr: []string{`"headers"`, "a list"}},
		{name: "bool given a string names the key", in: `{"enabled":"yes"}`, wantErr: []string{`"enabled"`, "true or false"}},
		{name: "object given a list names the key", in: `{"assertion":[]}`, wantErr: []string{`"assertion"`, "an object"}},
		{name: "trailing object refused", in: `{} {}`, wantErr: []string{"after the JSON object"}},
		{name: "trailing garbage refused", in: `{"realm":"x"}x`, wantErr: []string{"after the JSON object"}},
		{name: "empty input refused", in: ``, wantErr: []string{"empty config"}},
		{name: "whitespace input refused", in: " \n", wantErr: []string{"empty config"}},
		{name: "list instead of object", in: `[]`, wantErr: []string{"must be a JSON object"}},
		{name: "string instead of object", in: `"x"`, wantErr: []string{"must be a JSON object"}},
		{name: "invalid JSON", in: `{"realm":}`, wantErr: []string{"invalid JSON"}},
		{name: "truncated JSON", in: `{"realm":"x"`, wantErr: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c testConf
			_, err := DecodeStrict([]byte(tt.in), &c)
			if tt.check == nil {
				require.Error(t, err)
				for _, want := range tt.wantErr {
					assert.Contains(t, err.Error(), want)
				}
				return
			}
			require.NoError(t, err)
			tt.check(t, &c)
		})
	}
}

func TestDecodeStrictReportsKeysGiven(t *testing.T) {
	var c testConf
	keys, err := DecodeStrict([]byte(`{"fresh_ttl":"0s","assertion":{"ttl":"0s"},"enabled":false}`), &c)
	require.NoError(t, err)
	assert.True(t, keys.Has("fresh_ttl"), "an explicit zero is given")
	assert.True(t, keys.Has("assertion.ttl"))
	assert.True(t, keys.Has("enabled"))
	assert.False(t, keys.Has("stale_ttl"))
	assert.False(t, keys.Has("assertion.audience"))
}

func TestSecret(t *testing.T) {
	const name = "CONF_TEST_4F1A_SECRET"
	tests := []struct {
		name    string
		env     *string // nil: unset
		arg     string
		want    string
		wantErr string
	}{
		{name: "set", env: ptr(goodSecret), arg: name, want: goodSecret},
		{name: "too short", env: ptr("s3cret"), arg: name, wantErr: "at least 32"},
		{name: "too uniform", env: ptr(strings.Repeat("ab", 20)), arg: name, wantErr: "distinct"},
		{name: "a public APISIX variable", arg: "APISIX_CONF_EXPIRE_TIME", wantErr: "_SECRET"},
		{name: "the runner's Keycloak secret", arg: "KEYCLOAK_CLIENT_SECRET", wantErr: "another credential"},
		{name: "an APISIX variable ending in _SECRET", arg: "APISIX_ADMIN_SECRET", wantErr: "another credential"},
		{name: "lower case name", arg: "orgsync_webhook_secret", wantErr: "A-Z"},
		{name: "only the suffix", arg: "_SECRET", wantErr: "_SECRET"},
		{name: "unset names the variable", arg: name, wantErr: name},
		{name: "empty names the variable", env: ptr(""), arg: name, wantErr: name},
		{name: "no variable named", arg: "", wantErr: "no environment variable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.env != nil {
				t.Setenv(name, *tt.env)
			} else {
				// t.Setenv restores the old value at the end of the test;
				// unset it for the body of this one.
				t.Setenv(name, "")
				unsetenv(t, name)
			}
			got, err := Secret(tt.arg)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				assert.Empty(t, got)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

const goodSecret = "9f2c4e7a1b8d3f6095e4c2a7d1b0f3e8"

func ptr[T any](v T) *T { return &v }

func unsetenv(t *testing.T, name string) {
	t.Helper()
	require.NoError(t, os.Unsetenv(name))
}
