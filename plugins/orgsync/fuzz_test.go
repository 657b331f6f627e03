package orgsync

import "testing"

func FuzzParseConf(f *testing.F) {
	f.Add(`{"fresh_ttl":"30s","stale_ttl":"10m","shape":"auto","on_keycloak_error":"stale","check_account":true}`)
	f.Add(`{"claims":["organization","groups","roles"]}`)
	f.Add(`{"invalidate":true,"secret_env":"ORGSYNC_WEBHOOK_SECRET"}`)
	f.Add(`{"fresh_ttl":30}`)
	f.Add(`null`)
	p := New(Deps{})
	f.Fuzz(func(t *testing.T, in string) {
		v, err := p.ParseConf([]byte(in))
		if err != nil {
			t.Fatalf("ParseConf must never return an error (the runner would skip the plugin): %v", err)
		}
		c := v.(*Conf)
		if c.err == nil && !c.Invalidate && (c.FreshTTL <= 0 || c.StaleTTL < c.FreshTTL) {
			t.Fatalf("accepted an invalid config: %+v", c)
		}
	})
}
