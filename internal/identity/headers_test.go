package identity

import (
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNormalizeName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"X-Userinfo", "x-userinfo"},
		{"X_Userinfo", "x-userinfo"},
		{"x_USERINFO", "x-userinfo"},
		{"X_Access_Token", "x-access-token"},
		{"x-identity_ASSERTION", "x-identity-assertion"},
		{"", ""},
		{"__", "--"},
		{"Ünïcode_X", "Ünïcode-x"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			assert.Equal(t, tt.want, NormalizeName(tt.in))
		})
	}
}

func TestStrip(t *testing.T) {
	tests := []struct {
		name string
		// always is the rule's list of names stripped in every spelling.
		always []string
		// in is name/value pairs as the client sent them (added like the runner does).
		in []string
		// gone are names (any spelling) that must be absent afterwards, kept
		// are canonical map keys that must still be there with their value.
		gone    []string
		kept    map[string]string
		removed int
	}{
		{
			name: "strips X_Userinfo",
			in:   []string{"X_Userinfo", "forged", "X-Userinfo", "from-oidc"},
			gone: []string{"X_Userinfo"}, kept: map[string]string{"X-Userinfo": "from-oidc"}, removed: 1,
		},
		{
			name: "strips x_USERINFO",
			in:   []string{"x_USERINFO", "forged"},
			gone: []string{"X_userinfo", "x_USERINFO"}, removed: 1,
		},
		{
			name: "strips X_Access_Token",
			in:   []string{"X_Access_Token", "forged", "X-Access-Token", "jwt"},
			gone: []string{"X_Access_Token"}, kept: map[string]string{"X-Access-Token": "jwt"}, removed: 1,
		},
		{
			name: "strips underscore spellings of X-ID-Token and X-Raw-ID-Token",
			in:   []string{"X_ID_Token", "a", "x-id_token", "b", "X_Raw_ID_Token", "c", "x-raw-id_TOKEN", "d"},
			gone: []string{"X_ID_Token", "x-id_token", "X_Raw_ID_Token", "x-raw-id_TOKEN"}, removed: 4,
		},
		{
			name:   "strips X-Identity-Assertion in any case and with underscores",
			always: []string{HeaderAssertion},
			in: []string{
				"X-Identity-Assertion", "a", "x-identity-assertion", "b", "X_IDENTITY_ASSERTION", "c",
				"x-identity_Assertion", "d", "X_Identity-Assertion", "e",
			},
			gone: []string{"X-Identity-Assertion", "X_identity_assertion", "X-Identity_assertion", "X_identity-Assertion"},
			// "X-Identity-Assertion" and "x-identity-assertion" share one canonical key.
			removed: 4,
		},
		{
			name:   "strips every emitted header when listed",
			always: []string{HeaderUserID, HeaderUserEmail, HeaderUserOrgs, HeaderOrgsSource},
			in:     []string{"X-User-Id", "evil", "x_user_email", "evil", "X-USER-ORGS", "evil", "X_User_Orgs_Source", "evil", "X-User-Name", "ok"},
			gone:   []string{"X-User-Id", "X_user_email", "X-User-Orgs", "X_User_Orgs_Source"},
			kept:   map[string]string{"X-User-Name": "ok"}, removed: 4,
		},
		{
			name: "keeps hyphenated X-Userinfo for the verifier",
			in:   []string{"X-Userinfo", "from-oidc", "x-access-token", "jwt", "X-Id-Token", "idt", "X-Raw-Id-Token", "raw"},
			kept: map[string]string{"X-Userinfo": "from-oidc", "X-Access-Token": "jwt", "X-Id-Token": "idt", "X-Raw-Id-Token": "raw"},
		},
		{
			name:   "keeps unrelated headers such as X-Userinfo-Extra and X_Request_Id",
			always: []string{HeaderAssertion},
			in: []string{
				"X-Userinfo-Extra", "1", "X_Request_Id", "2", "X_Userinfo_", "3", "XUserinfo", "4",
				"X-Identity-Assertions", "5", "Authorization", "Bearer x", "Cookie", "c=1",
			},
			kept: map[string]string{
				"X-Userinfo-Extra": "1", "X_request_id": "2", "X_userinfo_": "3", "Xuserinfo": "4",
				"X-Identity-Assertions": "5", "Authorization": "Bearer x", "Cookie": "c=1",
			},
		},
		{
			name: "empty header set",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newFakeHeader(tt.in...)
			n := NewStripRule(tt.always...).Strip(h)
			assert.Equal(t, tt.removed, n, "removed count")
			for _, name := range tt.gone {
				assert.NotContains(t, h.View(), http.CanonicalHeaderKey(name), "%s is still there", name)
			}
			for key, value := range tt.kept {
				assert.Equal(t, []string{value}, h.View()[key], "%s must be kept", key)
			}
			assert.Len(t, h.View(), len(tt.kept), "only the kept headers remain: %v", h.View())
		})
	}
}

func TestStripRuleMatches(t *testing.T) {
	r := NewStripRule(HeaderAssertion, "x_custom_identity")
	tests := []struct {
		name string
		want bool
	}{
		{"X-Userinfo", false},
		{"x-userinfo", false},
		{"X_Userinfo", true},
		{"X-Userinfo_", false},
		{"X-Access_Token", true},
		{"X-Raw-ID_Token", true},
		{"X-Identity-Assertion", true},
		{"x_identity_assertion", true},
		{"X-Custom-Identity", true},
		{"X_Custom_Identity", true},
		{"X-Request-Id", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, r.Matches(tt.name))
		})
	}
}

func TestStripThroughRequest(t *testing.T) {
	// The plugins strip r.Header(): check the changes land in the map the
	// runner diffs against its copy to tell APISIX what to delete.
	r := &fakeRequest{id: 1, hdr: newFakeHeader("X_Userinfo", "forged", "X-Userinfo", "real")}
	NewStripRule().Strip(r.Header())
	assert.Equal(t, http.Header{"X-Userinfo": {"real"}}, r.Header().View())
	assert.Equal(t, "real", r.Header().Get(HeaderUserinfo))
}

func TestDeleteAllSpellings(t *testing.T) {
	h := newFakeHeader(
		"X-User-Id", "a", "x_user_id", "b", "X_USER-ID", "c",
		"X-User-Email", "d", "X-User-Ids", "e",
	)
	DeleteAllSpellings(h, HeaderUserID, "x-user_EMAIL")
	assert.Equal(t, http.Header{"X-User-Ids": {"e"}}, h.View())
}

func TestSanitizeValue(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"clean value untouched", "Ada Lovelace", "Ada Lovelace"},
		{"unicode untouched", "Adé 日本", "Adé 日本"},
		{"CRLF injection", "Ada\r\nX-Admin: true", "Ada  X-Admin: true"},
		{"lone LF", "a\nb", "a b"},
		{"lone CR", "a\rb", "a b"},
		{"NUL and DEL", "a\x00b\x7fc", "a b c"},
		{"tab", "a\tb", "a b"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := SanitizeValue(tt.in)
			assert.Equal(t, tt.want, got)
			assert.NotContains(t, got, "\r")
			assert.NotContains(t, got, "\n")
			assert.Len(t, got, len(tt.in), "same length, so offsets stay valid")
		})
	}
}

func TestSanitizedValueIsAcceptedByNetHTTP(t *testing.T) {
	// A sanitized value must be one net/http would send as a single header.
	h := http.Header{}
	h.Set("X-User-Name", SanitizeValue("Ada\r\nSet-Cookie: a=b"))
	var b strings.Builder
	require.NoError(t, h.Write(&b))
	assert.Equal(t, 1, strings.Count(b.String(), "\r\n"))
}

func TestRefuse(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		reason     string
		wantBody   string
		wantBearer bool
	}{
		{
			name: "unauthorized has a bearer challenge", status: http.StatusUnauthorized, reason: "token_expired",
			wantBody: `{"error":"Unauthorized","reason":"token_expired"}`, wantBearer: true,
		},
		{
			name: "forbidden without detail", status: http.StatusForbidden, reason: "subject_mismatch",
			wantBody: `{"error":"Forbidden","reason":"subject_mismatch"}`,
		},
		{
			name: "server error", status: http.StatusInternalServerError, reason: "misconfigured",
			wantBody: `{"error":"Internal Server Error","reason":"misconfigured"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			Refuse(w, tt.status, tt.reason)
			assert.Equal(t, tt.status, w.Code)
			assert.JSONEq(t, tt.wantBody, w.Body.String())
			assert.Equal(t, "application/json", w.Header().Get("Content-Type"))
			assert.Equal(t, "no-store", w.Header().Get("Cache-Control"))
			if tt.wantBearer {
				assert.Contains(t, w.Header().Get("WWW-Authenticate"), "Bearer")
			} else {
				assert.Empty(t, w.Header().Get("WWW-Authenticate"))
			}
		})
	}
}

func TestRepeatedIdentityHeaders(t *testing.T) {
	rule := NewStripRule(append([]string{"X-Custom-Claim"}, EmittedHeaders...)...)
	cases := []struct {
		name    string
		headers [][2]string
		want    string
	}{
		{"one of each", [][2]string{{"x-userinfo", "a"}, {"x-access-token", "b"}, {"x-user-orgs", "acme"}}, ""},
		{"same name twice", [][2]string{{"x-user-orgs", "acme"}, {"x-user-orgs", "globex"}}, "X-User-Orgs"},
		{"two cases", [][2]string{{"X-User-Orgs", "acme"}, {"x-user-orgs", "globex"}}, "X-User-Orgs"},
		{"hyphen and underscore", [][2]string{{"x-userinfo", "a"}, {"x_userinfo", "b"}}, "X-Userinfo"},
		{"access token twice", [][2]string{{"x-access-token", "a"}, {"x-access-token", "b"}}, "X-Access-Token"},
		{"id token twice", [][2]string{{"x-id-token", "a"}, {"X_ID_TOKEN", "b"}}, "X-Id-Token"},
		{"assertion twice", [][2]string{{"x-identity-assertion", "a"}, {"x_identity_assertion", "b"}}, "X-Identity-Assertion"},
		{"custom claim header twice", [][2]string{{"x-custom-claim", "a"}, {"X_Custom_Claim", "b"}}, "X-Custom-Claim"},
		{"other headers may repeat", [][2]string{{"accept", "a"}, {"accept", "b"}}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := runnertestHeader{http.Header{}}
			for _, kv := range tc.headers {
				h.h.Add(kv[0], kv[1])
			}
			values, repeated := rule.Scan(h)
			assert.Equal(t, tc.want, repeated)
			assert.Equal(t, len(tc.headers), values)
		})
	}
}

type runnertestHeader struct{ h http.Header }

func (h runnertestHeader) Set(k, v string)     { h.h.Set(k, v) }
func (h runnertestHeader) Del(k string)        { h.h.Del(k) }
func (h runnertestHeader) Get(k string) string { return h.h.Get(k) }
func (h runnertestHeader) View() http.Header   { return h.h }

// The keys DelCanonical is given are the names they stand for, as the
// runner library keys them: a wrong one would leave the header in place.
func TestKeysAreTheCanonicalNames(t *testing.T) {
	assert.Equal(t, textproto.CanonicalMIMEHeaderKey(HeaderIDToken), KeyIDToken)
	assert.Equal(t, textproto.CanonicalMIMEHeaderKey(HeaderRawIDToken), KeyRawIDToken)
	assert.Equal(t, textproto.CanonicalMIMEHeaderKey(HeaderRefreshToken), HeaderRefreshToken)
	for _, h := range append(append([]string{}, EmittedHeaders...), HeaderUserinfo) {
		assert.Equal(t, textproto.CanonicalMIMEHeaderKey(h), h, "emitted as they are")
	}
}
