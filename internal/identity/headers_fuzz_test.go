package identity

import (
	"strings"
	"testing"
)

// FuzzStrip sends a header set of up to four client headers (fields split on
// "\n" into name/value) plus the always-stripped name of the rule.
func FuzzStrip(f *testing.F) {
	f.Add("X_Userinfo\nforged\nX-Userinfo\nreal", "X-Identity-Assertion")
	f.Add("x_USERINFO\na\nX_Access_Token\nb\nX_Request_Id\nc\nX-Userinfo-Extra\nd", "x_identity_assertion")
	f.Add("X-IDENTITY_assertion\na\nx-raw-id_token\nb\nX_ID_TOKEN\nc", "X-Identity-Assertion")
	f.Add("X-User-Id\nevil\nx_user_id\nevil", "X-User-Id")
	f.Add("a b\nc\n\xff\nd\n\nempty", "")
	f.Fuzz(func(t *testing.T, headers, always string) {
		fields := strings.Split(headers, "\n")
		h := newFakeHeader()
		for i := 0; i+1 < len(fields) && i < 16; i += 2 {
			h.Add(fields[i], fields[i+1])
		}
		before := h.Clone()
		var rule *StripRule
		if always == "" {
			rule = NewStripRule()
		} else {
			rule = NewStripRule(always)
		}
		n := rule.Strip(h)

		underscored := map[string]bool{}
		for _, name := range OIDCHeaders {
			underscored[NormalizeName(name)] = true
		}
		removed := 0
		for key, values := range before {
			norm := NormalizeName(key)
			mustGo := (always != "" && norm == NormalizeName(always)) ||
				(underscored[norm] && strings.Contains(key, "_"))
			got, still := h.View()[key]
			switch {
			case mustGo && still:
				t.Fatalf("%q is still there", key)
			case mustGo:
				removed++
			case !still:
				t.Fatalf("%q was removed", key)
			case strings.Join(got, "\x00") != strings.Join(values, "\x00"):
				t.Fatalf("%q changed: %q != %q", key, got, values)
			}
		}
		if n != removed {
			t.Fatalf("Strip said %d removed, %d were", n, removed)
		}
		if len(h.View()) != len(before)-removed {
			t.Fatalf("header count %d, want %d", len(h.View()), len(before)-removed)
		}
		for key := range h.View() {
			if rule.Matches(key) {
				t.Fatalf("%q matches the rule but was kept", key)
			}
		}
	})
}
