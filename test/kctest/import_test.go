package kctest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A partial import whose answer is lost (the deadline passes after Keycloak
// created the users) is sent again; the retry must find the users the first
// attempt made instead of failing on them or creating them twice. The proxy
// only withholds the first answer: the import itself is the real Keycloak's.
func TestRetriedImportIsIdempotent(t *testing.T) {
	s := Env(t)
	target, err := url.Parse(s.URL)
	require.NoError(t, err)
	var calls atomic.Int32
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		out, err := http.NewRequestWithContext(r.Context(), r.Method, target.String()+r.URL.RequestURI(), r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		out.Header = r.Header.Clone()
		// Not the request's context: the client gives up first, Keycloak must still finish.
		out = out.WithContext(t.Context())
		resp, err := http.DefaultClient.Do(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		if n == 1 {
			<-r.Context().Done() // the first answer never arrives in time
			return
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	defer proxy.Close()

	byName := map[string]*TestUser{}
	var reps []map[string]any
	for range 3 {
		u, rep := newTestUser("retry")
		byName[u.Username] = u
		reps = append(reps, rep)
	}
	var made []*TestUser
	t.Cleanup(func() { deleteUsers(t, made) })
	made, err = importUsers(t, proxy.URL+"/admin/realms/"+url.PathEscape(s.Realm)+"/partialImport", 5*time.Second, reps, byName)
	require.NoError(t, err)
	assert.EqualValues(t, 2, calls.Load(), "one lost answer, one retry")
	require.Len(t, made, 3)
	for _, u := range made {
		assert.Equal(t, UserIDByUsername(t, u.Username), u.ID, "the id of the user the first attempt created")
	}
}
