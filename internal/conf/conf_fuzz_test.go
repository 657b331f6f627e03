package conf

import (
	"strings"
	"testing"
	"time"
)

func FuzzDuration(f *testing.F) {
	for _, seed := range []string{`"30s"`, `"10m"`, `"1h30m"`, `"250ms"`, `30`, `"abc"`, `""`, `null`, `"`, `"-5s"`, `"9999999999h"`, `"\u0033\u0030s"`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var d Duration
		if err := d.UnmarshalJSON(in); err != nil {
			if d != 0 {
				t.Fatalf("refused %q but set %v", in, d)
			}
			return
		}
		// Whatever was accepted must write back as a string that reads back equal.
		b, err := d.MarshalJSON()
		if err != nil {
			t.Fatalf("marshal %v: %v", d, err)
		}
		var back Duration
		if err := back.UnmarshalJSON(b); err != nil {
			t.Fatalf("read back %s: %v", b, err)
		}
		if back != d {
			t.Fatalf("round trip %q: %v != %v", in, back, d)
		}
		if time.Duration(d).String() != d.String() {
			t.Fatalf("String disagrees")
		}
	})
}

func FuzzDecodeStrict(f *testing.F) {
	for _, seed := range []string{
		`{}`,
		`{"fresh_ttl":"30s","stale_ttl":"10m","max_orgs":5,"realm":"example","enabled":true,"headers":["a"],"assertion":{"ttl":"1m","audience":"app"},"optional":{"timeout":"2s"}}`,
		`{"fresh_ttl":30}`,
		`{"assertion":{"ttl":60}}`,
		`{"bogus":1}`,
		`{} {}`,
		``,
		`[]`,
		`{"realm":}`,
		`{"optional":null}`,
		`{"assertion":{"ttl":"1m"},"assertion":{"ttl":5}}`,
		`{"FRESH_TTL":5}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var c testConf
		_, err := DecodeStrict(in, &c)
		if err != nil && strings.TrimSpace(err.Error()) == "" {
			t.Fatalf("empty error message for %q", in)
		}
		var m map[string]any
		if _, err := DecodeStrict(in, &m); err != nil && strings.TrimSpace(err.Error()) == "" {
			t.Fatalf("empty error message for %q into a map", in)
		}
	})
}
