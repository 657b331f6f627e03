package access

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pathReq is a request as APISIX hands it to the runner by default: uri is
// nginx's $uri (what ext-plugin sends as the path), raw is the request-target
// the client sent ($real_request_uri), which the upstream receives.
func pathReq(uri, raw string) Request {
	return Request{Path: uri, RawURI: func() (string, error) { return raw, nil }}
}

func TestTenantFromPath(t *testing.T) {
	tn := &Tenant{Path: "/orgs/{org}"}
	require.NoError(t, tn.compile())
	cases := []struct {
		name     string
		uri, raw string
		want     string
		reason   string
	}{
		{"plain", "/orgs/acme/invoices", "/orgs/acme/invoices?page=2", "acme", ""},
		{"tenant only", "/orgs/acme", "/orgs/acme", "acme", ""},
		{"trailing slash deleted by delete_uri_tail_slash", "/orgs/acme", "/orgs/acme/", "acme", ""},
		{"encoding after the tenant", "/orgs/acme/files/a b", "/orgs/acme/files/a%20b", "acme", ""},
		// nginx decodes %2F into a separator in $uri; the upstream gets it encoded.
		{"encoded slash", "/orgs/acme/globex/x", "/orgs/acme%2Fglobex/x", "", ReasonTenantAmbiguous},
		{"encoded slash lower case", "/orgs/acme/globex/x", "/orgs/acme%2fglobex/x", "", ReasonTenantAmbiguous},
		{"encoded slash after the tenant", "/orgs/acme/x/y", "/orgs/acme/x%2Fy", "", ReasonTenantAmbiguous},
		{"encoded backslash", "/orgs/acme\\..\\globex", "/orgs/acme%5C..%5Cglobex", "", ReasonTenantAmbiguous},
		{"backslash", "/orgs/acme\\..\\globex", "/orgs/acme\\..\\globex", "", ReasonTenantAmbiguous},
		// Decoded once by nginx, the '%' stays in $uri.
		{"double-encoded slash", "/orgs/acme%2Fglobex/x", "/orgs/acme%252Fglobex/x", "", ReasonTenantAmbiguous},
		// nginx resolves dot segments in $uri; the upstream gets them raw.
		{"dot-dot", "/orgs/globex/x", "/orgs/acme/../globex/x", "", ReasonTenantAmbiguous},
		{"dot-dot later", "/orgs/globex/y", "/orgs/acme/x/../../globex/y", "", ReasonTenantAmbiguous},
		{"encoded dot-dot", "/orgs/globex/x", "/orgs/acme/%2e%2e/globex/x", "", ReasonTenantAmbiguous},
		{"dot-dot left in $uri", "/orgs/acme/../globex", "/orgs/acme/%2e%2e/globex", "", ReasonTenantAmbiguous},
		{"dot", "/orgs/acme/x", "/orgs/./acme/x", "", ReasonTenantAmbiguous},
		{"merged slashes", "/orgs/acme/x", "/orgs//acme/x", "", ReasonTenantAmbiguous},
		{"merged slashes after", "/orgs/acme/x", "/orgs/acme//x", "", ReasonTenantAmbiguous},
		{"encoded letters in the tenant", "/orgs/acme/x", "/orgs/%61cme/x", "", ReasonTenantAmbiguous},
		{"encoded prefix", "/orgs/acme/x", "/%6Frgs/acme/x", "", ReasonTenantAmbiguous},
		{"cyrillic a, sent raw", "/orgs/\u0430cme/x", "/orgs/\u0430cme/x", "", ReasonTenantAmbiguous},
		{"cyrillic a", "/orgs/\u0430cme/x", "/orgs/%D0%B0cme/x", "", ReasonTenantAmbiguous},
		{"two organizations", "/orgs/acme/orgs/globex/x", "/orgs/acme/orgs/globex/x", "", ReasonTenantAmbiguous},
		{"two organizations, other case", "/orgs/acme/ORGS/globex", "/orgs/acme/ORGS/globex", "", ReasonTenantAmbiguous},
		{"bad escape", "/orgs/acme/x", "/orgs/acme/x%zz", "", ReasonTenantAmbiguous},
		{"raw differs", "/orgs/acme/x", "/orgs/globex/x", "", ReasonTenantAmbiguous},
		// Case is kept: ACME is not the alias acme (Decide refuses it).
		{"upper case", "/orgs/ACME/x", "/orgs/ACME/x", "ACME", ""},
		{"prefix in other case", "/ORGS/acme/x", "/ORGS/acme/x", "", ReasonTenantMissing},
		{"no tenant", "/orgs/", "/orgs/", "", ReasonTenantMissing},
		{"other path", "/health", "/health", "", ReasonTenantMissing},
		{"no raw uri", "/orgs/acme", "", "", ReasonTenantAmbiguous},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, reason := tn.Read(pathReq(tc.uri, tc.raw))
			assert.Equal(t, tc.reason, reason)
			assert.Equal(t, tc.want, got)
		})
	}
	_, reason := tn.Read(Request{Path: "/orgs/acme", RawURI: func() (string, error) { return "", errors.New("closed") }})
	assert.Equal(t, ReasonTenantAmbiguous, reason)
}

func TestTenantFromHost(t *testing.T) {
	tn := &Tenant{Host: "{org}.apps.example.org"}
	require.NoError(t, tn.compile())
	cases := []struct{ host, want, reason string }{
		{"acme.apps.example.org", "acme", ""},
		{"acme.apps.example.org:9443", "acme", ""},
		{"acme.apps.example.org.", "", ReasonTenantAmbiguous},
		{"acme.apps.example.org.:80", "", ReasonTenantAmbiguous},
		{"ACME.apps.example.org", "", ReasonTenantAmbiguous},
		{"acme.APPS.example.org", "", ReasonTenantAmbiguous},
		{"\u0430cme.apps.example.org", "", ReasonTenantAmbiguous},
		{"xn--cme-8cd.apps.example.org", "", ReasonTenantAmbiguous},
		{"globex.acme.apps.example.org", "", ReasonTenantAmbiguous},
		{"acme.apps.example.org:", "", ReasonTenantAmbiguous},
		{"acme.apps.example.org:80:80", "", ReasonTenantAmbiguous},
		{"acme.apps.example.org:8o", "", ReasonTenantAmbiguous},
		{"acme%2eapps.example.org", "", ReasonTenantAmbiguous},
		{"-acme.apps.example.org", "", ReasonTenantAmbiguous},
		{".apps.example.org", "", ReasonTenantAmbiguous},
		{"apps.example.org", "", ReasonTenantMissing},
		{"acme.example.org", "", ReasonTenantMissing},
		{"", "", ReasonTenantMissing},
	}
	for _, tc := range cases {
		t.Run(tc.host, func(t *testing.T) {
			got, reason := tn.Read(Request{Host: tc.host})
			assert.Equal(t, tc.reason, reason)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestTenantFromHeader(t *testing.T) {
	tn := &Tenant{Header: "X_Tenant"}
	require.NoError(t, tn.compile())
	hdr := func(v string, n int) Request {
		return Request{Header: func(name string) (string, int) {
			assert.Equal(t, "x-tenant", name)
			return v, n
		}}
	}
	got, reason := tn.Read(hdr("acme", 1))
	assert.Equal(t, "acme", got)
	assert.Empty(t, reason)
	for _, tc := range []struct {
		v      string
		n      int
		reason string
	}{
		{"", 0, ReasonTenantMissing},
		{"acme", 2, ReasonTenantAmbiguous}, // a client's copy next to the gateway's
		{"acme,globex", 1, ReasonTenantAmbiguous},
		{"\u0430cme", 1, ReasonTenantAmbiguous},
		{"..", 1, ReasonTenantAmbiguous},
	} {
		_, reason := tn.Read(hdr(tc.v, tc.n))
		assert.Equal(t, tc.reason, reason, tc.v)
	}
}

// FuzzTenantPath: whatever the client sends, a tenant read from the path is
// exactly the segment the raw request-target holds at that place, written
// plainly, so an upstream reading the raw target agrees.
func FuzzTenantPath(f *testing.F) {
	for _, s := range []string{"/orgs/acme/x", "/orgs/acme%2Fx", "/orgs/a/../b", "/orgs//a", "/orgs/%61/x", "/orgs/a/orgs/b"} {
		f.Add(s)
	}
	tn := &Tenant{Path: "/orgs/{org}"}
	require.NoError(f, tn.compile())
	f.Fuzz(func(t *testing.T, raw string) {
		uri, ok := percentDecode(raw)
		if !ok {
			return
		}
		got, reason := tn.Read(pathReq(uri, raw))
		if reason != "" {
			assert.Empty(t, got)
			return
		}
		segs := strings.Split(raw, "/")
		require.GreaterOrEqual(t, len(segs), 3)
		assert.Equal(t, "orgs", segs[1])
		assert.Equal(t, got, segs[2])
		assert.True(t, pathValue(got))
		assert.NotContains(t, strings.ToLower(raw), "%2f")
		for _, s := range segs {
			d, _ := percentDecode(s)
			assert.NotEqual(t, "..", d)
		}
	})
}

// FuzzRule: any JSON the decoder accepts either fails validation or
// evaluates without panicking, in bounded time.
func FuzzRule(f *testing.F) {
	for _, s := range []string{`{"org":"a"}`, `{"any":[{"org":"a"},{"all":[{"realm_role":"r"}]}]}`,
		`{"client_role":{"client":"c","role":"r"}}`, `{"tenant_group":"/g"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var r Rule
		if json.Unmarshal([]byte(s), &r) != nil {
			return
		}
		if r.Validate("require", true) != nil {
			return
		}
		_ = r.Holds(&alice, "acme")
		_ = r.Holds(&Facts{}, "")
		_ = r.Needs()
	})
}
