//go:build integration

package integration

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/cache"
	"github.com/apisix-identity-runner/apisix-identity-runner/plugins/orgsync"
	"github.com/apisix-identity-runner/apisix-identity-runner/test/kctest"
)

// invalidationLog is the shared cache with every key it was asked to
// invalidate recorded.
type invalidationLog struct {
	orgsync.Store
	mu   sync.Mutex
	keys []string
}

func (l *invalidationLog) Invalidate(ctx context.Context, keys ...string) error {
	l.mu.Lock()
	l.keys = append(l.keys, keys...)
	l.mu.Unlock()
	return l.Store.Invalidate(ctx, keys...)
}

// newInvalidationLog is a cache on the test Redis, under a prefix of its own
// (so a watcher started on it has its own lease and position), that records
// what it is asked to invalidate.
func newInvalidationLog(t *testing.T) *invalidationLog {
	t.Helper()
	c, err := cache.New(t.Context(), &cache.Options{RedisURL: redisURL(t), ValueSecret: []byte(redisValueSecret),
		KeyPrefix: fmt.Sprintf("it-%s-%d:", t.Name(), time.Now().UnixNano())})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return &invalidationLog{Store: c}
}

// missing lists the users none of whose keys was invalidated yet.
func (l *invalidationLog) missing(users []*kctest.TestUser) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, u := range users {
		found := false
		for _, k := range l.keys {
			if strings.Contains(k, u.ID) {
				found = true
				break
			}
		}
		if !found {
			out = append(out, u.Username)
		}
	}
	return out
}

// A bulk change waiting for the watcher (it was stopped: a restart, a lease
// hand-over) is worked off against the real Keycloak: members added to an
// organization one after another by a script, which Keycloak 26.5 records
// naming each member only by username, so that each event takes a user search.
// Every member is invalidated. The log gives the time the backlog took beside
// the same searches made one after another, which is what it cost before the
// watcher read a page's events several at a time.
func TestWatcherWorksOffABulkMembershipChange(t *testing.T) {
	const members = 80
	kc := runnerKeycloak(t)
	store := newInvalidationLog(t)
	deps := &orgsync.Deps{Cache: store, Keycloak: kc}

	org := kctest.CreateOrganization(t, fmt.Sprintf("bulk-%d", time.Now().UnixNano()))
	kctest.CheapPasswords(t) // nobody logs in: the import need not hash at full cost
	users := kctest.CreateUsers(t, "bulk", members)

	// The watcher saves its position, then stops; the members are added
	// while none runs.
	first := orgsync.StartWatcher(deps, 200*time.Millisecond)
	time.Sleep(time.Second)
	first.Stop()
	for _, u := range users {
		kctest.AddMember(t, org, u.ID)
	}
	require.Len(t, store.missing(users), members, "no watcher ran while the members were added")

	start := time.Now()
	second := orgsync.StartWatcher(deps, 200*time.Millisecond)
	t.Cleanup(second.Stop)
	eventually(t, 60*time.Second, "every added member invalidated", func() bool { return len(store.missing(users)) == 0 })
	backlog := time.Since(start)

	start = time.Now()
	for _, u := range users {
		id, err := kc.UserIDByUsername(t.Context(), u.Username)
		require.NoError(t, err)
		assert.Equal(t, u.ID, id)
	}
	t.Logf("%d member additions worked off in %d ms by a watcher started after them; the same %d user searches one after another: %d ms",
		members, backlog.Milliseconds(), members, time.Since(start).Milliseconds())
}

// An organization of several pages of Keycloak's member list (100 a page) is
// changed (its description edited): the watcher lists every member, page by
// page across its polls, from the real Keycloak and invalidates each through
// the real Redis. (1100 members took Keycloak 26.5 over 5 s to list here.)
func TestWatcherInvalidatesEveryMemberOfALargeOrganization(t *testing.T) {
	const members = 600
	kc := runnerKeycloak(t)
	store := newInvalidationLog(t)

	alias := fmt.Sprintf("large-%d", time.Now().UnixNano())
	org := kctest.CreateOrganization(t, alias)
	kctest.CheapPasswords(t) // nobody logs in: the import need not hash at full cost
	users := kctest.CreateUsers(t, "large", members)
	start := time.Now()
	kctest.AddMembers(t, org, users)
	t.Logf("%d members added in %d ms", members, time.Since(start).Milliseconds())

	// Started well after the additions: it does not read them (no position
	// saved, it starts an interval back), only the change below.
	time.Sleep(2 * time.Second)
	w := orgsync.StartWatcher(&orgsync.Deps{Cache: store, Keycloak: kc}, 200*time.Millisecond)
	t.Cleanup(w.Stop)
	time.Sleep(time.Second)
	require.Equal(t, members, len(store.missing(users)), "the additions were before the watcher")

	admin := kctest.AdminToken(t)
	rep, ok := adminJSON(t, admin, http.MethodGet, "/organizations/"+org, nil).(map[string]any)
	require.True(t, ok)
	rep["description"] = "edited by " + t.Name()
	start = time.Now()
	adminJSON(t, admin, http.MethodPut, "/organizations/"+org, rep)
	eventually(t, 60*time.Second, "every member invalidated", func() bool { return len(store.missing(users)) == 0 })
	t.Logf("an UPDATE of an organization of %d members: all invalidated %d ms after the admin call",
		members, time.Since(start).Milliseconds())
}
