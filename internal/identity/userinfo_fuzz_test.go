package identity

import (
	"encoding/base64"
	"errors"
	"testing"
)

func FuzzDecodeUserinfo(f *testing.F) {
	for _, org := range []string{
		`["acme","globex"]`,
		`{"acme":{"id":"u1"},"globex":{"id":"u2"}}`,
		`{"acme":{"id":"u1","tier":["gold"]}}`,
		`"acme"`,
		``,
		`null`,
		`{}`,
		`[1,2]`,
		`{"acme":"x"}`,
		`{"acme":{"id":5}}`,
		`true`,
	} {
		f.Add(b64(orgClaim(org)))
		f.Add(b64raw(orgClaim(org)))
	}
	for _, garbage := range []string{
		"", "=", "====", "!!!", "e30", "e30=", "W10=", "bnVsbA==", "\r\ne30=\r\n",
		b64(`{"sub":42}`), b64(`{"sub":""}`), b64(`{"email":[]}`), b64(`{"a":1}{`), b64(`{"<k>":"\u00e9\ud800"}`),
		b64("{\"a\":\"\xff\xfe\"}"),
	} {
		f.Add(garbage)
	}
	f.Fuzz(func(t *testing.T, value string) {
		c, err := DecodeUserinfo(value, 0)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error is not ErrMalformed: %v", err)
			}
			if c != nil {
				t.Fatalf("claims returned with an error")
			}
			return
		}
		// Whatever decoded must survive a round trip unchanged, and the
		// parsed claims must be readable without error.
		enc, err := c.Encode()
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		if _, err := base64.StdEncoding.DecodeString(enc); err != nil {
			t.Fatalf("encode gave invalid base64: %v", err)
		}
		// Re-encoding may grow the value (json escapes "<" in keys), so
		// decode it without a size limit that could refuse it.
		back, err := DecodeUserinfo(enc, len(enc)+1)
		if err != nil {
			t.Fatalf("decode of own encoding %q: %v", enc, err)
		}
		if len(back) != len(c) {
			t.Fatalf("round trip changed the claim count: %d != %d", len(back), len(c))
		}
		for k, v := range c {
			if string(back[k]) != string(v) {
				t.Fatalf("claim %q changed: %s != %s", k, back[k], v)
			}
		}
		orgs, err := c.Organizations()
		if err != nil {
			t.Fatalf("organizations after a successful decode: %v", err)
		}
		reparsed, err := ParseOrganizations(orgs.Encode(orgs.Shape))
		if err != nil {
			t.Fatalf("organizations %v do not re-parse: %v", orgs, err)
		}
		if got, want := reparsed.HeaderValue(), orgs.HeaderValue(); got != want {
			t.Fatalf("aliases changed: %q != %q", got, want)
		}
		// The list and single shapes carry no ids; the others must come back whole.
		if orgs.Shape != ShapeList && orgs.Shape != ShapeSingle && !reparsed.Equal(orgs) {
			t.Fatalf("organizations changed: %v != %v", reparsed, orgs)
		}
	})
}
