package keycloak

import (
	"encoding/base64"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAuditPrivileges(t *testing.T) {
	cases := []struct {
		name     string
		roles    []string
		version  string
		watcher  bool
		missing  []string
		unneeded []string
		empty    bool
	}{
		{"26.5 with manage-realm: all needed", []string{"manage-realm", "view-users", "view-events", "query-users", "query-groups"},
			"26.5.6", true, nil, nil, false},
		{"26.7 with manage-realm: no longer needed", []string{"manage-realm", "view-users", "view-events", "query-users", "query-groups"},
			"26.7.3", true, nil, []string{"manage-realm"}, false},
		{"26.7 least privilege", []string{"view-organizations", "query-organizations", "view-users", "view-events", "query-users", "query-groups"},
			"26.7.3", true, nil, nil, false},
		{"view-organizations proves 26.7 when the version is hidden", []string{"view-organizations", "query-organizations", "view-users"},
			"", false, nil, nil, false},
		{"query-organizations alone reads empty lists", []string{"query-organizations", "view-users", "view-events"},
			"", true, []string{"manage-realm"}, nil, true},
		{"watcher off needs no view-events", []string{"manage-realm", "view-users", "view-events"},
			"26.5.6", false, nil, []string{"view-events"}, false},
		{"realm-admin is far too much", []string{"realm-admin", "manage-realm", "view-users"},
			"26.6.0", false, nil, []string{"realm-admin"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := AuditPrivileges(tc.roles, tc.version, tc.watcher)
			assert.Equal(t, tc.missing, p.Missing, "missing")
			assert.Equal(t, tc.unneeded, p.Unneeded, "unneeded")
			assert.Equal(t, tc.empty, p.EmptyOrgReads)
		})
	}
}

func TestAtLeast(t *testing.T) {
	for v, want := range map[string]bool{"26.7.3": true, "26.7.0-SNAPSHOT": true, "27.0.0": true, "26.6.9": false,
		"26.5.6": false, "": false, "nightly": false, "999.0": true} {
		assert.Equal(t, want, atLeast(v, 26, 7), v)
	}
}

func TestTokenRoles(t *testing.T) {
	enc := base64.RawURLEncoding.EncodeToString
	tok := enc([]byte(`{"alg":"RS256"}`)) + "." +
		enc([]byte(`{"resource_access":{"realm-management":{"roles":["manage-realm","view-users"]},"account":{"roles":["x"]}}}`)) + ".sig"
	roles, err := tokenRoles(tok)
	require.NoError(t, err)
	assert.Equal(t, []string{"manage-realm", "view-users"}, roles)

	roles, err = tokenRoles(enc([]byte(`{}`)) + "." + enc([]byte(`{"sub":"x"}`)) + ".sig")
	require.NoError(t, err)
	assert.Empty(t, roles)
	for _, bad := range []string{"", "a.b", "a.!!!.c", "a." + enc([]byte("not json")) + ".c"} {
		_, err := tokenRoles(bad)
		assert.Error(t, err, bad)
	}
}
