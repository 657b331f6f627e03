package userinfo

import (
	"testing"
)

func FuzzParseConf(f *testing.F) {
	f.Add(`{"issuer":"https://sso.example.org/realms/olapps","verify_token":true,"audience":"","on_invalid":"reject","require_user":false,"claim_headers":{"X-User-Id":"sub","X-User-Email":"email","X-User-Orgs":"organization"},"assertion":{"header":"X-Identity-Assertion","audience":"mitxonline","ttl":"60s"}}`)
	f.Add(`{"jwks":true}`)
	f.Add(`{"verify_token":false,"on_invalid":"anonymous"}`)
	f.Add(`{"issuer":"https://sso.example.org/r","assertion":{"audience":"a","ttl":60}}`)
	f.Add(`[]`)
	f.Add(``)
	p := &Plugin{}
	f.Fuzz(func(t *testing.T, in string) {
		v, err := p.ParseConf([]byte(in))
		if err != nil {
			t.Fatalf("ParseConf must never return an error (the runner would skip the plugin): %v", err)
		}
		c := v.(*Conf)
		if c.err == nil && !c.JWKS && c.strip == nil {
			t.Fatal("a good config must be fully derived")
		}
	})
}
