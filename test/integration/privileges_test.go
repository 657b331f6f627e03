//go:build integration

package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/test/kctest"
)

// The runner tells the operator at start whether its service account holds
// more or less than this Keycloak needs. Against the real Keycloak of the
// suite (26.5.x in CI, 26.7.x in the second run), with service accounts made
// for the test.
func TestServiceAccountPrivilegesAudit(t *testing.T) {
	version := keycloakVersion(t)
	newer := versionAtLeast(version, 26, 7)
	t.Logf("Keycloak %s", version)

	orgRole := "manage-realm"
	if newer {
		orgRole = "view-organizations"
	}
	cases := []struct {
		name  string
		roles []string
		warn  string // "" when the set is the smallest one
	}{
		{"smallest set for this version", []string{orgRole, "view-users", "view-events"}, ""},
		{"no organization role", []string{"view-users", "view-events"}, "lacks roles"},
		{"realm-admin", []string{"realm-admin"}, "never uses"},
	}
	if newer {
		cases = append(cases,
			struct {
				name  string
				roles []string
				warn  string
			}{"manage-realm on 26.7+", []string{"manage-realm", "view-users", "view-events"}, "no longer needs"},
			struct {
				name  string
				roles []string
				warn  string
			}{"query-organizations alone", []string{"query-organizations", "view-users", "view-events"}, "empty list"})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, secret := serviceAccountClient(t, tc.roles)
			e := baseEnv(t, kctest.Env(t).URL)
			e["KEYCLOAK_CLIENT_ID"], e["KEYCLOAK_CLIENT_SECRET"] = id, secret
			e["KEYCLOAK_EVENTS_INTERVAL"] = "60s" // the watcher runs (view-events is needed) but stays quiet
			r := startRunner(t, e)
			eventually(t, 15*time.Second, "the privileges are reported", func() bool {
				return strings.Contains(r.Output(), "keycloak service account")
			})
			out := r.Output()
			assert.NotContains(t, out, secret)
			if tc.warn == "" {
				assert.Contains(t, out, "privileges: the smallest set")
				assert.NotContains(t, out, `"level":"WARN","msg":"keycloak service account`)
				return
			}
			assert.Regexp(t, `"level":"WARN","msg":"keycloak service account[^"]*`+tc.warn, out)
		})
	}
}

// keycloakVersion asks the server info as the master realm's admin.
func keycloakVersion(t *testing.T) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, kctest.Env(t).URL+"/admin/serverinfo", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+kctest.AdminToken(t))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var info struct {
		SystemInfo struct{ Version string } `json:"systemInfo"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&info))
	require.NotEmpty(t, info.SystemInfo.Version)
	return info.SystemInfo.Version
}

func versionAtLeast(v string, major, minor int) bool {
	f := strings.SplitN(v, ".", 3)
	if len(f) < 2 {
		return false
	}
	ma, _ := strconv.Atoi(f[0])
	mi, _ := strconv.Atoi(f[1])
	return ma > major || (ma == major && mi >= minor)
}

// serviceAccountClient makes a confidential client whose service account
// holds exactly roles of realm-management, deleted when the test ends.
func serviceAccountClient(t *testing.T, roles []string) (clientID, secret string) {
	t.Helper()
	s := kctest.Env(t)
	base := s.URL + "/admin/realms/" + url.PathEscape(s.Realm)
	call := func(method, u string, body any, want int, out any) {
		t.Helper()
		var rd *bytes.Reader
		if body != nil {
			b, err := json.Marshal(body)
			require.NoError(t, err)
			rd = bytes.NewReader(b)
		} else {
			rd = bytes.NewReader(nil)
		}
		req, err := http.NewRequest(method, u, rd)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+kctest.AdminToken(t))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, want, resp.StatusCode, "%s %s", method, u)
		if out != nil {
			require.NoError(t, json.NewDecoder(resp.Body).Decode(out))
		}
	}
	clientID = fmt.Sprintf("privileges-%d", time.Now().UnixNano())
	secret = clientID + "-secret"
	call(http.MethodPost, base+"/clients", map[string]any{"clientId": clientID, "secret": secret, "publicClient": false,
		"serviceAccountsEnabled": true, "standardFlowEnabled": false}, http.StatusCreated, nil)
	var clients []struct{ ID string }
	call(http.MethodGet, base+"/clients?clientId="+clientID, nil, http.StatusOK, &clients)
	require.Len(t, clients, 1)
	t.Cleanup(func() { call(http.MethodDelete, base+"/clients/"+clients[0].ID, nil, http.StatusNoContent, nil) })
	var user struct{ ID string }
	call(http.MethodGet, base+"/clients/"+clients[0].ID+"/service-account-user", nil, http.StatusOK, &user)
	var rm []struct{ ID string }
	call(http.MethodGet, base+"/clients?clientId=realm-management", nil, http.StatusOK, &rm)
	require.Len(t, rm, 1)
	var all []map[string]any
	call(http.MethodGet, base+"/clients/"+rm[0].ID+"/roles?max=1000", nil, http.StatusOK, &all)
	var grant []map[string]any
	for _, r := range all {
		if slices.Contains(roles, r["name"].(string)) {
			grant = append(grant, r)
		}
	}
	require.Len(t, grant, len(roles), "realm-management lacks one of %v", roles)
	call(http.MethodPost, base+"/users/"+user.ID+"/role-mappings/clients/"+rm[0].ID, grant, http.StatusNoContent, nil)
	return clientID, secret
}
