package identity

import (
	"math/rand"
	"net/http"
	"strings"
	"testing"

	pkgHTTP "github.com/apache/apisix-go-plugin-runner/pkg/http"
	runnerhttptest "github.com/apache/apisix-go-plugin-runner/pkg/httptest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// viewsVerdicts runs the byte-level scan, lookups and strip on the runner
// library's own Request for headers, and the map-based ones on the v0.5.0
// header (fakeHeader, filled with Add as the runner filled it), and requires
// the same verdicts: value count, whether a header is repeated (and which
// one, when only one is), the identity headers' values, what Strip and
// DeleteAllSpellings remove and what stays, and what the upstream gets.
func viewsVerdicts(t *testing.T, headers [][2]string, rule *StripRule, deleteNames []string) {
	t.Helper()
	ref := newFakeHeader()
	for _, h := range headers {
		ref.Add(h[0], h[1])
	}
	wantValues, wantRepeated := rule.Scan(ref)
	repeatedSet := map[string]bool{}
	counts := map[int]int{}
	for key, vs := range ref.Header {
		if i := index(rule, key); i >= 0 {
			counts[i] += len(vs)
			if counts[i] > 1 {
				repeatedSet[headerDisplayName(rule.names[i])] = true
			}
		}
	}
	lookups := append([]string{headerAuthorization}, OIDCHeaders...)
	wantLookup := map[string]string{}
	for _, k := range lookups {
		wantLookup[k] = ref.Get(k)
	}
	wantRemoved := rule.Strip(ref)
	DeleteAllSpellings(ref, deleteNames...)
	// Scanned again past the changes (as a later plugin scans): deleted
	// headers are gone and set ones are there.
	ref.Set(HeaderUserOrgs, "acme")
	wantValuesAfter, wantRepeatedAfter := rule.Scan(ref)
	want := ref.Header

	// verdict checks a scan's count and verdict; how says which scan.
	verdict := func(how string, values int, repeated string) {
		assert.Equal(t, wantValues, values, "%svalue count of %q", how, headers)
		assert.Equal(t, wantRepeated == "", repeated == "", "%srepeated %q vs %q in %q", how, repeated, wantRepeated, headers)
		if len(repeatedSet) == 1 {
			assert.Equal(t, wantRepeated, repeated)
		} else if repeated != "" {
			assert.True(t, repeatedSet[repeated], "%s%q is not repeated in %q", how, repeated, headers)
		}
	}

	frame := runnerhttptest.NewRequestFrame(1, 1, "/", headers)
	var got http.Header
	out := runnerhttptest.ServeFrame(nil, frame, func(_ http.ResponseWriter, r pkgHTTP.Request) {
		values, repeated := rule.ScanRequest(r)
		verdict("", values, repeated)
		for _, k := range lookups {
			assert.Equal(t, wantLookup[k], string(HeaderBytes(r, k)), "%s in %q", k, headers)
		}
		assert.Equal(t, wantRemoved, rule.StripRequest(r), "removed from %q", headers)
		DeleteAllSpellingsOf(r, deleteNames...)
		r.Header().Set(HeaderUserOrgs, "acme")
		values, repeated = rule.ScanRequest(r)
		assert.Equal(t, wantValuesAfter, values, "value count after the changes of %q", headers)
		assert.Equal(t, wantRepeatedAfter == "", repeated == "", "repeated after the changes of %q", headers)
		got = r.Header().View().Clone()
	})
	require.False(t, runnerhttptest.ParseAnswer(out).Stop)
	assert.Equal(t, want, got, "left of %q", headers)

	// The same in one walk: the scan's verdict and the strip's deletions.
	out = runnerhttptest.ServeFrame(nil, frame, func(_ http.ResponseWriter, r pkgHTTP.Request) {
		values, repeated, removed := rule.ScanStripRequest(r)
		verdict("one walk: ", values, repeated)
		assert.Equal(t, wantRemoved, removed, "one walk: removed from %q", headers)
		DeleteAllSpellingsOf(r, deleteNames...)
		r.Header().Set(HeaderUserOrgs, "acme")
		got = r.Header().View().Clone()
	})
	require.False(t, runnerhttptest.ParseAnswer(out).Stop)
	assert.Equal(t, want, got, "one walk: left of %q", headers)
}

// headerAuthorization is looked up like the identity headers: a bearer
// call's token.
const headerAuthorization = "Authorization"

func TestViewsGiveTheMapsVerdicts(t *testing.T) {
	names := []string{"X-Userinfo", "x-userinfo", "X_Userinfo", "x_USERINFO", "x-access-token", "X_Access_Token",
		"x-id-token", "X_ID_Token", "x-raw-id-token", "x-refresh-token", "X_Refresh_Token", "authorization",
		"Authorization", "x-identity-assertion", "X_IDENTITY_ASSERTION", "x-user-orgs", "X-User-Orgs", "x_user_orgs",
		"x-user-id", "x-user-email", "x-user-orgs-source", "cookie", "host", "bad name", "x-userinfo-extra", "",
		"x-user\x00id", "x-ümlaut",
		// Not token names, as long as a header looked up: only themselves.
		"x userinfo", "X USERINFO", "x-access token", "authorizati:n", "x-id\x7ftoken"}
	values := []string{"", "a", "eyJzdWIiOiJ1In0=", "acme,globex", " spaced "}
	rng := rand.New(rand.NewSource(18))
	rules := []*StripRule{NewStripRule(), NewStripRule(EmittedHeaders...), NewStripRule(append(EmittedHeaders, "X-User-Name")...)}
	for i := 0; i < 3000; i++ {
		headers := make([][2]string, rng.Intn(10))
		for j := range headers {
			headers[j] = [2]string{names[rng.Intn(len(names))], values[rng.Intn(len(values))]}
		}
		deleteNames := OIDCHeaders
		if rng.Intn(2) == 0 {
			deleteNames = UnverifiedOIDCHeaders
		}
		viewsVerdicts(t, headers, rules[rng.Intn(len(rules))], deleteNames)
	}
}

// FuzzViewsGiveTheMapsVerdicts: the same on fuzzed header sets ("\n"
// separated name/value fields, up to 16 headers).
func FuzzViewsGiveTheMapsVerdicts(f *testing.F) {
	f.Add("X_Userinfo\nforged\nX-Userinfo\nreal", "X-Identity-Assertion")
	f.Add("x-user-orgs\nacme\nX_User_Orgs\nglobex\nx-userinfo\na", "X-User-Orgs")
	f.Add("x-userinfo\na\nX-USERINFO\nb", "")
	f.Add("a b\nc\n\xff\nd\n\nempty", "")
	f.Fuzz(func(t *testing.T, fields, always string) {
		parts := strings.Split(fields, "\n")
		var headers [][2]string
		for i := 0; i+1 < len(parts) && i < 32; i += 2 {
			headers = append(headers, [2]string{parts[i], parts[i+1]})
		}
		rule := NewStripRule()
		if always != "" {
			rule = NewStripRule(always)
		}
		viewsVerdicts(t, headers, rule, OIDCHeaders)
	})
}

// TestViewsFallBackToTheMap: a request that is not the runner library's
// (a fake, an older library) gets the map-based answers.
func TestViewsFallBackToTheMap(t *testing.T) {
	r := &fakeRequest{hdr: newFakeHeader("X_Userinfo", "forged", "X-Access-Token", "t", "X-User-Orgs", "a", "x_user_orgs", "b")}
	rule := NewStripRule(EmittedHeaders...)
	values, repeated := rule.ScanRequest(r)
	assert.Equal(t, 4, values)
	assert.Equal(t, "X-User-Orgs", repeated)
	assert.Equal(t, "t", string(HeaderBytes(r, HeaderAccessToken)))
	assert.Nil(t, HeaderBytes(r, HeaderUserinfo))
	assert.Equal(t, 3, rule.StripRequest(r))
	DeleteAllSpellingsOf(r, HeaderAccessToken)
	assert.Empty(t, r.hdr.Header)

	r = &fakeRequest{hdr: newFakeHeader("X_Userinfo", "forged", "X-User-Orgs", "a", "x_user_orgs", "b")}
	values, repeated, removed := rule.ScanStripRequest(r)
	assert.Equal(t, 3, values)
	assert.Equal(t, "X-User-Orgs", repeated)
	assert.Equal(t, 3, removed)
	assert.Empty(t, r.hdr.Header)
}
