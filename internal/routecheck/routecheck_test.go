package routecheck

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestExpandVars(t *testing.T) {
	doc, err := Decode([]byte(`
a: "${{SET:=unused}}"
b: ["${{UNSET:=fallback}}", "x-${{SET}}-y"]
c: {d: "${{ EMPTY_DEFAULT:= }}"}
`))
	require.NoError(t, err)
	env := map[string]string{"SET": "from-env"}
	got, err := ExpandVars(doc, func(k string) string { return env[k] })
	require.NoError(t, err)
	m := got.(map[string]any)
	assert.Equal(t, "from-env", m["a"])
	assert.Equal(t, []any{"fallback", "x-from-env-y"}, m["b"])
	assert.Equal(t, map[string]any{"d": ""}, m["c"])

	doc, err = Decode([]byte(`secret: "${{NOT_SET}}"`))
	require.NoError(t, err)
	_, err = ExpandVars(doc, func(string) string { return "" })
	require.Error(t, err)
	assert.Contains(t, err.Error(), "NOT_SET")
	doc, err = Decode([]byte("# ${{IN_A_COMMENT}}\na: [\"${{SET:=1}} ${{UNSET}}\", \"${{SET}}\"]\n"))
	require.NoError(t, err)
	assert.Equal(t, []string{"SET", "UNSET"}, VarNames(doc))
}

func TestLoadForms(t *testing.T) {
	route := `{"id":"r1","uri":"/a","plugins":{"x":{}}}`
	for name, doc := range map[string]string{
		"one route":        route,
		"a list":           `[` + route + `]`,
		"apisix.yaml":      `{"routes":[` + route + `]}`,
		"admin api 3 list": `{"total":1,"list":[{"key":"/apisix/routes/r1","value":{"uri":"/a","plugins":{"x":{}}}}]}`,
		"admin api 3 item": `{"key":"/apisix/routes/r1","value":` + route + `}`,
		"admin api 2":      `{"node":{"nodes":[{"key":"/apisix/routes/r1","value":` + route + `}]}}`,
	} {
		t.Run(name, func(t *testing.T) {
			d, err := Decode([]byte(doc))
			require.NoError(t, err)
			routes, err := Load(d)
			require.NoError(t, err)
			require.Len(t, routes, 1)
			assert.Equal(t, "route r1", routes[0].ID)
			assert.Contains(t, routes[0].Plugins, "x")
		})
	}
	d, err := Decode([]byte(`{"nothing":"here"}`))
	require.NoError(t, err)
	_, err = Load(d)
	assert.Error(t, err)
}

func TestEnvs(t *testing.T) {
	d, err := Decode([]byte("nginx_config:\n  envs: [A, B=1]\n"))
	require.NoError(t, err)
	envs, err := Envs(d)
	require.NoError(t, err)
	assert.Equal(t, []string{"A", "B"}, envs)
}

// fakeSigns reads {"iss","aud","realm"} confs of a plugin named "signer".
func fakeSigns(name string, value []byte) *Signed {
	var v struct{ Iss, Aud, Realm string }
	if name != "signer" || json.Unmarshal(value, &v) != nil || v.Aud == "" {
		return nil
	}
	return &Signed{Issuer: v.Iss, Audience: v.Aud, TokenIssuer: v.Realm}
}

func signer(id, file, iss, aud, realm string) Route {
	value := fmt.Sprintf(`{"iss":%q,"aud":%q,"realm":%q}`, iss, aud, realm)
	return Route{ID: id, File: file, Plugins: map[string]any{PostReq: map[string]any{
		"conf": []any{map[string]any{"name": "signer", "value": value}}}}}
}

func TestOneAssertionForTwoRealms(t *testing.T) {
	o := Options{Parsers: map[string]Parser{"signer": func([]byte) ([]string, error) { return nil, nil }}, Signs: fakeSigns}
	for _, tc := range []struct {
		name   string
		routes []Route
		want   []string // routes with a problem
	}{
		{"two realms, one iss and aud", []Route{signer("a", "", "gw", "app", "A"), signer("b", "", "gw", "app", "B")}, []string{"b"}},
		{"a verified and an unverified route", []Route{signer("a", "", "gw", "app", "A"), signer("b", "", "gw", "app", "")}, []string{"b"}},
		{"each route sharing the pair with a route of another realm is named",
			[]Route{signer("a", "", "gw", "app", "A"), signer("b", "", "gw", "app", "B"), signer("c", "", "gw", "app", "A"),
				signer("d", "", "gw", "app", "D")}, []string{"b", "c", "d"}},
		{"one realm", []Route{signer("a", "", "gw", "app", "A"), signer("b", "", "gw", "app", "A")}, nil},
		{"one audience per realm", []Route{signer("a", "", "gw", "app-a", "A"), signer("b", "", "gw", "app-b", "B")}, nil},
		{"one iss per realm", []Route{signer("a", "", "gw-a", "app", "A"), signer("b", "", "gw-b", "app", "B")}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, p := range Check(tc.routes, o) {
				assert.Contains(t, p.Message, "give each realm its own assertion.audience")
				got = append(got, p.Route)
			}
			assert.Equal(t, tc.want, got)
		})
	}
	problems := Check([]Route{signer("a", "one.yaml", "gw", "app", "A"), signer("b", "two.yaml", "gw", "app", "B")}, o)
	require.Len(t, problems, 1)
	assert.Equal(t, "two.yaml", problems[0].File)
	assert.Contains(t, problems[0].Message, "also signed on one.yaml: a for users of \"A\"")
}

// A plugin's warnings about a good conf come back tied to their route and
// marked, so a caller can print them without failing.
func TestCheckPassesOnPluginWarnings(t *testing.T) {
	o := Options{Parsers: map[string]Parser{
		"userinfo": func(value []byte) ([]string, error) {
			if string(value) == `{"any_audience":true}` {
				return []string{"accepts a token issued to any client"}, nil
			}
			return nil, nil
		},
	}}
	doc, err := Decode([]byte(`{"routes":[
		{"id":"open","plugins":{"ext-plugin-post-req":{"conf":[{"name":"userinfo","value":"{\"any_audience\":true}"}]}}},
		{"id":"checked","plugins":{"ext-plugin-post-req":{"conf":[{"name":"userinfo","value":"{\"audience\":\"apisix\"}"}]}}},
		{"id":"degraded","plugins":{"ext-plugin-post-req":{"allow_degradation":true,
			"conf":[{"name":"userinfo","value":"{\"any_audience\":true}"}]}}}]}`))
	require.NoError(t, err)
	routes, err := Load(doc)
	require.NoError(t, err)
	found := Check(routes, o)
	require.Len(t, found, 3, "%v", found)
	assert.Equal(t, Problem{Route: "route open", Warning: true,
		Message: "ext-plugin-post-req conf[0]: userinfo: accepts a token issued to any client"}, found[0])
	assert.Equal(t, "route open: warning: ext-plugin-post-req conf[0]: userinfo: accepts a token issued to any client",
		found[0].String())
	assert.Equal(t, "route degraded", found[1].Route)
	assert.True(t, found[1].Warning)
	assert.Equal(t, "route degraded", found[2].Route)
	assert.False(t, found[2].Warning)
	assert.Contains(t, found[2].Message, "allow_degradation")
}
