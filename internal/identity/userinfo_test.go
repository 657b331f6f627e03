package identity

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func b64(s string) string    { return base64.StdEncoding.EncodeToString([]byte(s)) }
func b64raw(s string) string { return base64.RawStdEncoding.EncodeToString([]byte(s)) }

// orgClaim builds a userinfo JSON with the given organization claim value
// (raw JSON; "" leaves the claim out).
func orgClaim(org string) string {
	if org == "" {
		return `{"sub":"u-1","email":"ada@example.org"}`
	}
	return `{"sub":"u-1","email":"ada@example.org","organization":` + org + `}`
}

func TestDecodeUserinfo(t *testing.T) {
	const body = `{"sub":"u-1","email":"ada@example.org","name":"Ada","preferred_username":"ada","groups":["/staff"],"x":12}`
	// A body whose base64 needs padding, to tell padded from unpadded apart.
	require.NotZero(t, len(body)%3, "body must need padding")

	tests := []struct {
		name    string
		value   string
		max     int
		wantSub string
		// wantErr lists substrings the error must contain; the error must
		// also be ErrMalformed.
		wantErr []string
	}{
		{name: "padded base64", value: b64(body), wantSub: "u-1"},
		{name: "unpadded base64", value: b64raw(body), wantSub: "u-1"},
		{name: "no sub is allowed", value: b64(`{"email":"a@example.org"}`)},
		{name: "null email is allowed", value: b64(`{"sub":"u-1","email":null}`), wantSub: "u-1"},
		{name: "surrounding whitespace in the JSON", value: b64(" \n" + body + "\n"), wantSub: "u-1"},
		{name: "malformed base64", value: "!!!not base64!!!", wantErr: []string{"not base64"}},
		{name: "url-safe alphabet refused", value: strings.NewReplacer("+", "-", "/", "_").Replace(b64(`{"sub":"?>?>"}`)), wantErr: []string{"not base64"}},
		{name: "empty value", value: "", wantErr: []string{"not a JSON object"}},
		{name: "JSON array", value: b64(`[{"sub":"u-1"}]`), wantErr: []string{"not a JSON object"}},
		{name: "JSON string", value: b64(`"u-1"`), wantErr: []string{"not a JSON object"}},
		{name: "JSON number", value: b64(`42`), wantErr: []string{"not a JSON object"}},
		{name: "JSON null", value: b64(`null`), wantErr: []string{"not a JSON object"}},
		{name: "invalid JSON", value: b64(`{"sub":"u-1",}`), wantErr: []string{"invalid JSON"}},
		{name: "trailing data after the object", value: b64(`{"sub":"u-1"} {}`), wantErr: []string{"invalid JSON"}},
		{name: "over the limit", value: b64(body), max: len(b64(body)) - 1, wantErr: []string{"limit"}},
		{name: "at the limit", value: b64(body), max: len(b64(body)), wantSub: "u-1"},
		{name: "over the default limit", value: b64(`{"x":"` + strings.Repeat("a", DefaultMaxUserinfoBytes) + `"}`), wantErr: []string{"limit"}},
		{name: "sub is a number", value: b64(`{"sub":42}`), wantErr: []string{`"sub"`, "string"}},
		{name: "sub is a list", value: b64(`{"sub":["u-1"]}`), wantErr: []string{`"sub"`}},
		{name: "sub is empty", value: b64(`{"sub":""}`), wantErr: []string{`"sub"`, "empty"}},
		{name: "sub is null", value: b64(`{"sub":null}`), wantErr: []string{`"sub"`, "empty"}},
		{name: "email is a number", value: b64(`{"sub":"u-1","email":1}`), wantErr: []string{`"email"`}},
		{name: "email is an object", value: b64(`{"sub":"u-1","email":{"a":"b"}}`), wantErr: []string{`"email"`}},
		{name: "name is a list", value: b64(`{"sub":"u-1","name":["Ada"]}`), wantErr: []string{`"name"`}},
		{name: "preferred_username is a bool", value: b64(`{"sub":"u-1","preferred_username":true}`), wantErr: []string{`"preferred_username"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := DecodeUserinfo(tt.value, tt.max)
			if tt.wantErr != nil {
				require.Error(t, err)
				assert.ErrorIs(t, err, ErrMalformed)
				for _, want := range tt.wantErr {
					assert.Contains(t, err.Error(), want)
				}
				assert.Nil(t, c)
				return
			}
			require.NoError(t, err)
			require.NotNil(t, c)
			assert.Equal(t, tt.wantSub, c.Subject())
		})
	}
}

func TestDecodeUserinfoOrganizationShapes(t *testing.T) {
	tests := []struct {
		name      string
		org       string // raw JSON of the claim; "" for absent
		wantShape Shape
		wantList  []Organization
		wantErr   string // besides ErrMalformed and the claim name
	}{
		{
			name: "list of aliases", org: `["acme","globex"]`, wantShape: ShapeList,
			wantList: []Organization{{Alias: "acme"}, {Alias: "globex"}},
		},
		{
			name: "map with ids", org: `{"acme":{"id":"u1"},"globex":{"id":"u2"}}`, wantShape: ShapeMap,
			wantList: []Organization{{Alias: "acme", ID: "u1"}, {Alias: "globex", ID: "u2"}},
		},
		{
			name: "map sorted by alias", org: `{"globex":{"id":"u2"},"acme":{"id":"u1"}}`, wantShape: ShapeMap,
			wantList: []Organization{{Alias: "acme", ID: "u1"}, {Alias: "globex", ID: "u2"}},
		},
		{
			name: "map with attributes", org: `{"acme":{"id":"u1","tier":["gold"]}}`, wantShape: ShapeMapAttributes,
			wantList: []Organization{{Alias: "acme", ID: "u1", Attributes: map[string][]string{"tier": {"gold"}}}},
		},
		{
			name: "map with a single-string attribute", org: `{"acme":{"id":"u1","tier":"gold"}}`, wantShape: ShapeMapAttributes,
			wantList: []Organization{{Alias: "acme", ID: "u1", Attributes: map[string][]string{"tier": {"gold"}}}},
		},
		{
			name: "map with attributes on one org only", org: `{"acme":{"id":"u1"},"globex":{"id":"u2","tier":["x","y"]}}`,
			wantShape: ShapeMapAttributes,
			wantList: []Organization{
				{Alias: "acme", ID: "u1"},
				{Alias: "globex", ID: "u2", Attributes: map[string][]string{"tier": {"x", "y"}}},
			},
		},
		{name: "single string", org: `"acme"`, wantShape: ShapeSingle, wantList: []Organization{{Alias: "acme"}}},
		{name: "single empty string", org: `""`, wantShape: ShapeSingle},
		{name: "absent", org: "", wantShape: ShapeAbsent},
		{name: "null", org: `null`, wantShape: ShapeAbsent},
		{name: "empty object from APISIX before 3.18", org: `{}`, wantShape: ShapeEmptyObject},
		{name: "empty list", org: `[]`, wantShape: ShapeList, wantList: []Organization{}},
		{name: "list of numbers", org: `[1,2]`, wantErr: "list"},
		{name: "list with an empty alias", org: `["acme",""]`, wantErr: "empty alias"},
		{name: "list of lists", org: `[["acme"]]`, wantErr: "list"},
		{name: "map of strings", org: `{"acme":"x"}`, wantErr: "object"},
		{name: "map of lists", org: `{"acme":["x"]}`, wantErr: "object"},
		{name: "map with numeric id", org: `{"acme":{"id":5}}`, wantErr: "acme.id"},
		{name: "map with object attribute", org: `{"acme":{"id":"u1","tier":{"a":1}}}`, wantErr: "acme.tier"},
		{name: "map with empty alias", org: `{"":{"id":"u1"}}`, wantErr: "empty alias"},
		{name: "bool", org: `true`, wantErr: "expected a list, an object or a string"},
		{name: "number", org: `7`, wantErr: "expected a list, an object or a string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := DecodeUserinfo(b64(orgClaim(tt.org)), 0)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.ErrorIs(t, err, ErrMalformed)
				assert.Contains(t, err.Error(), `"organization"`)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			orgs, err := c.Organizations()
			require.NoError(t, err)
			assert.Equal(t, tt.wantShape, orgs.Shape)
			assert.Equal(t, tt.wantList, orgs.List)
		})
	}
}

func TestClaimsMerge(t *testing.T) {
	tests := []struct {
		name     string
		userinfo Claims
		token    Claims
		want     Claims
	}{
		{
			name:     "token wins on keys in both",
			userinfo: Claims{"sub": raw(`"u-1"`), "email": raw(`"forged@example.com"`)},
			token:    Claims{"sub": raw(`"u-1"`), "email": raw(`"ada@example.org"`)},
			want:     Claims{"sub": raw(`"u-1"`), "email": raw(`"ada@example.org"`)},
		},
		{
			name:     "token-only keys are not added",
			userinfo: Claims{"sub": raw(`"u-1"`)},
			token:    Claims{"sub": raw(`"u-1"`), "azp": raw(`"app"`), "exp": raw(`1700000000`)},
			want:     Claims{"sub": raw(`"u-1"`)},
		},
		{
			name:     "userinfo-only keys are kept",
			userinfo: Claims{"sub": raw(`"u-1"`), "organization": raw(`["acme"]`), "picture": raw(`"p"`)},
			token:    Claims{"sub": raw(`"u-1"`), "organization": raw(`["globex"]`)},
			want:     Claims{"sub": raw(`"u-1"`), "organization": raw(`["globex"]`), "picture": raw(`"p"`)},
		},
		{
			name:     "empty token changes nothing",
			userinfo: Claims{"sub": raw(`"u-1"`)},
			token:    Claims{},
			want:     Claims{"sub": raw(`"u-1"`)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.token.Clone()
			tt.userinfo.Merge(tt.token)
			assert.Equal(t, tt.want, tt.userinfo)
			assert.Equal(t, before, tt.token, "Merge must not change the override")
		})
	}
}

func TestClaimsClone(t *testing.T) {
	c := Claims{"sub": raw(`"u-1"`)}
	d := c.Clone()
	d["sub"] = raw(`"u-2"`)
	d["email"] = raw(`"x"`)
	assert.Equal(t, Claims{"sub": raw(`"u-1"`)}, c)
}

func TestClaimsEncode(t *testing.T) {
	// Claims this project does not read, written with odd spacing, escapes
	// and number forms: they must pass through byte for byte.
	const in = `{"zeta": {"b" : 1, "a":[1, 2.50, 1e3]},"sub":"u-1","email":"ada@example.org",` +
		`"name":"Ad\u00e9 \"A\"","organization":{"acme":{"id":"u1","tier":["gold"]}},"alpha":null,"big":12345678901234567890}`

	c, err := DecodeUserinfo(b64(in), 0)
	require.NoError(t, err)

	enc, err := c.Encode()
	require.NoError(t, err)
	decoded, err := base64.StdEncoding.DecodeString(enc)
	require.NoError(t, err, "Encode must give padded standard base64")

	want := `{"alpha":null,"big":12345678901234567890,"email":"ada@example.org",` +
		`"name":"Ad\u00e9 \"A\"","organization":{"acme":{"id":"u1","tier":["gold"]}},"sub":"u-1",` +
		`"zeta":{"b" : 1, "a":[1, 2.50, 1e3]}}`
	assert.Equal(t, want, string(decoded), "sorted keys, values untouched")

	back, err := DecodeUserinfo(enc, 0)
	require.NoError(t, err)
	assert.Equal(t, c, back)

	t.Run("equal claims encode equal", func(t *testing.T) {
		again, err := back.Encode()
		require.NoError(t, err)
		assert.Equal(t, enc, again)
	})
	t.Run("empty claims", func(t *testing.T) {
		enc, err := Claims{}.Encode()
		require.NoError(t, err)
		assert.Equal(t, b64(`{}`), enc)
	})
	t.Run("empty raw value is written as null", func(t *testing.T) {
		b, err := json.Marshal(Claims{"a": nil})
		require.NoError(t, err)
		assert.Equal(t, `{"a":null}`, string(b))
	})
}

func raw(s string) json.RawMessage { return json.RawMessage(s) }
