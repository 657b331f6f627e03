package userinfo

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/identity"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/runnertest"
)

func FuzzParseConf(f *testing.F) {
	f.Add(`{"issuer":"https://sso.example.org/realms/olapps","verify_token":true,"audience":"apisix","on_invalid":"reject","require_user":false,"claim_headers":{"X-User-Id":"sub","X-User-Email":"email","X-User-Orgs":"organization"},"assertion":{"header":"X-Identity-Assertion","audience":"mitxonline","ttl":"60s"}}`)
	f.Add(`{"jwks":true}`)
	f.Add(`{"verify_token":false,"on_invalid":"anonymous"}`)
	f.Add(`{"issuer":"https://sso.example.org/r","assertion":{"audience":"a","ttl":60}}`)
	f.Add(`{"issuer":"https://sso.example.org/r","any_audience":true}`)
	f.Add(`[]`)
	f.Add(``)
	p := testPlugin
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

// FuzzRequestFilter feeds arbitrary X-Userinfo and header names through the
// whole filter, emission and signing included: it must never panic (a panic
// drops the runner connection) and must always either refuse with a JSON
// reason or pass a request whose X-Userinfo decodes.
func FuzzRequestFilter(f *testing.F) {
	f.Add(`{"sub":"u1","email":"a@example.org","organization":["acme"]}`, "X_Userinfo")
	f.Add(`{"sub":"u1","organization":{"acme":{"id":"o1","tier":["gold"]}}}`, "x-identity-assertion")
	f.Add(`{"sub":"u1","organization":{}}`, "X-User-Orgs")
	f.Add(`{"sub":5}`, "x_access_token")
	f.Add(`[]`, "")
	f.Add(`{"sub":"u1","name":"a\r\nb","groups":[1,{"x":null}]}`, "X-Other")
	p := testPlugin
	v, err := p.ParseConf([]byte(`{"verify_token":false,"claim_headers":{"X-User-Id":"sub","X-Groups":"groups","X-Name":"name","X-Orgs":"organization"},"assertion":{"audience":"app"}}`))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, userinfoJSON, extraHeader string) {
		headers := map[string]string{"x-userinfo": base64.StdEncoding.EncodeToString([]byte(userinfoJSON))}
		if extraHeader != "" {
			headers[extraHeader] = "forged"
		}
		r := runnertest.NewRequest(1, 1, headers)
		w := httptest.NewRecorder()
		p.RequestFilter(v, w, r)
		if w.Code != http.StatusOK || w.Body.Len() > 0 {
			var body map[string]string
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body["reason"] == "" {
				t.Fatalf("refusal without a JSON reason: %d %q", w.Code, w.Body.String())
			}
			return
		}
		if ui := r.Header().Get("X-Userinfo"); ui != "" {
			if _, err := identity.DecodeUserinfo(ui, 0); err != nil {
				t.Fatalf("emitted X-Userinfo does not decode: %v", err)
			}
		}
		for name, values := range r.Header().View() {
			for _, v := range values {
				if strings.ContainsAny(v, "\r\n") {
					t.Fatalf("header %s carries a line break", name)
				}
			}
		}
	})
}
