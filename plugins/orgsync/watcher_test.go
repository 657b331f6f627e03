package orgsync

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/identity"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/logtest"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/redistest"
	"github.com/apisix-identity-runner/apisix-identity-runner/keycloak"
)

func (d *fakeDirectory) addEvent(ev keycloak.AdminEvent) {
	d.mu.Lock()
	d.events = append(d.events, ev)
	d.mu.Unlock()
}

// The watcher turns an admin event into an invalidation: the next request
// sees Keycloak's new answer long before fresh_ttl.
func TestWatcherInvalidatesOnAdminEvents(t *testing.T) {
	h := newHarness(t)
	h.dir.addUser("u-alice", true, acme, globex)
	conf := h.route(`{"fresh_ttl":"1h","stale_ttl":"1h"}`)
	alice := login("u-alice")
	_, r := h.do(conf, alice, nil)
	require.Equal(t, "acme,globex", r.Header().Get("X-User-Orgs"))

	w := StartWatcher(&h.plugin.deps, 20*time.Millisecond)
	defer w.Stop()
	h.dir.addUser("u-alice", true, acme)
	h.dir.addEvent(keycloak.AdminEvent{ID: "ev-1", Time: time.Now(), OperationType: "DELETE",
		ResourceType: keycloak.ResourceOrganizationMembership, ResourcePath: "organizations/org-2/members/u-alice"})

	deadline := time.Now().Add(3 * time.Second)
	for {
		_, r = h.do(conf, alice, nil)
		if r.Header().Get("X-User-Orgs") == "acme" {
			break
		}
		require.True(t, time.Now().Before(deadline), "the event never invalidated the cached list")
		time.Sleep(10 * time.Millisecond)
	}
	assert.Equal(t, SourceKeycloak, r.Header().Get(identity.HeaderOrgsSource))

	// The position is kept: the same event is not handled twice.
	calls := h.dir.orgCalls.Load()
	time.Sleep(100 * time.Millisecond)
	_, r = h.do(conf, alice, nil)
	assert.Equal(t, SourceCache, r.Header().Get(identity.HeaderOrgsSource))
	assert.Equal(t, calls, h.dir.orgCalls.Load())
}

// A Keycloak outage fails polls without invalidating anything, and the
// watcher picks up the events once Keycloak answers again.
func TestWatcherSurvivesKeycloakFailures(t *testing.T) {
	h := newHarness(t)
	h.dir.addUser("u-bob", true, acme)
	conf := h.route(`{"fresh_ttl":"1h","stale_ttl":"1h","check_account":false}`)
	bob := login("u-bob")
	_, _ = h.do(conf, bob, nil)

	w := StartWatcher(&h.plugin.deps, 20*time.Millisecond)
	defer w.Stop()
	time.Sleep(100 * time.Millisecond) // a position is saved
	h.dir.setFail(errKeycloakDown)
	time.Sleep(100 * time.Millisecond)
	// The change happens while Keycloak is unreachable for the watcher.
	h.dir.addUser("u-bob", true, acme, globex)
	h.dir.addEvent(keycloak.AdminEvent{ID: "ev-2", Time: time.Now(), OperationType: "CREATE",
		ResourceType: keycloak.ResourceUser, ResourcePath: "users/u-bob"})
	time.Sleep(100 * time.Millisecond)
	h.dir.setFail(nil)
	deadline := time.Now().Add(3 * time.Second)
	for {
		_, r := h.do(conf, bob, nil)
		if r.Header().Get("X-User-Orgs") == "acme,globex" {
			break
		}
		require.True(t, time.Now().Before(deadline), "the watcher did not recover")
		time.Sleep(10 * time.Millisecond)
	}
}

// invalidationCounter is the cache as the watcher sees it, counting how
// often each key is invalidated.
type invalidationCounter struct {
	Store
	mu    sync.Mutex
	byKey map[string]int
	sizes []int // keys per call, in order
}

func (c *invalidationCounter) Invalidate(ctx context.Context, keys ...string) error {
	if err := c.Store.Invalidate(ctx, keys...); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sizes = append(c.sizes, len(keys))
	for _, k := range keys {
		c.byKey[k]++
	}
	return nil
}

// of is how often user's cached lists were invalidated.
func (c *invalidationCounter) of(user string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byKey[userKeys(testRealm, user)[0]]
}

// poll is one poll of the watcher's loop (pollEvents), for the tests that run
// the polls themselves.
func (w *Watcher) poll(ctx context.Context) error {
	_, err := w.pollEvents(ctx)
	return err
}

// newPoller is a watcher whose polls the test runs itself, one at a time,
// from position at (unix ms).
func newPoller(t *testing.T, h *harness, at int64) (*Watcher, *invalidationCounter) {
	t.Helper()
	counter := &invalidationCounter{Store: h.store, byKey: map[string]int{}}
	savePosition(t, h, at)
	return &Watcher{deps: &Deps{Cache: counter, Keycloak: h.dir}, interval: time.Second}, counter
}

// savePosition saves the watcher's position at (unix ms) in h's cache.
func savePosition(t *testing.T, h *harness, at int64) {
	t.Helper()
	require.NoError(t, h.store.SetState(t.Context(), watcherPosition, position{at: at, ids: map[string]bool{}}.String()))
}

// countInvalidations makes h's plugin (and so a watcher started on its deps)
// count the invalidations it asks for.
func countInvalidations(h *harness) *invalidationCounter {
	counter := &invalidationCounter{Store: h.store, byKey: map[string]int{}}
	h.plugin.deps.Cache = counter
	return counter
}

// overlap counts calls in flight and the most seen at once.
type overlap struct {
	mu             sync.Mutex
	inFlight, most int
}

// enter counts a call in; the function it returns counts it out.
func (o *overlap) enter() (leave func()) {
	o.mu.Lock()
	o.inFlight++
	o.most = max(o.most, o.inFlight)
	o.mu.Unlock()
	return func() {
		o.mu.Lock()
		o.inFlight--
		o.mu.Unlock()
	}
}

func (o *overlap) highest() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.most
}

// pause waits d, or less if ctx ends first (then its error): a slow Keycloak
// answer that a cancelled call does not wait for.
func pause(ctx context.Context, d time.Duration) error {
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// addUserEvents adds one USER event for each of n users (u-000, u-001, ...),
// the i-th at time at(i).
func (d *fakeDirectory) addUserEvents(n int, at func(i int) time.Time) []string {
	users := make([]string, n)
	for i := range users {
		users[i] = fmt.Sprintf("u-%03d", i)
		d.addEvent(keycloak.AdminEvent{ID: "ev-" + users[i], Time: at(i), OperationType: "UPDATE",
			ResourceType: keycloak.ResourceUser, ResourcePath: "users/" + users[i]})
	}
	return users
}

// A backlog longer than one poll gets through (the position of an old
// watcher, a Keycloak that fails now and then): each page is handled and its
// position saved before the next is asked for. With the whole backlog fetched
// first, every poll met a failure and started over from the same position.
func TestWatcherWorksOffBacklogDespiteFailures(t *testing.T) {
	h := newHarness(t)
	start := time.Now().Add(-2 * time.Hour).Truncate(time.Millisecond)
	users := h.dir.addUserEvents(350, func(i int) time.Time { return start.Add(time.Duration(i+1) * 10 * time.Second) })
	h.dir.eventsFail = func(n int) error {
		if n%3 == 0 {
			return errKeycloakDown
		}
		return nil
	}
	w, counter := newPoller(t, h, start.UnixMilli())

	polls := 0
	for ; polls < 5; polls++ {
		if w.poll(t.Context()) == nil {
			break
		}
	}
	for _, u := range users {
		require.Equal(t, 1, counter.of(u), "user %s invalidated once", u)
	}
	require.Less(t, polls, 5, "the last poll got to the end of the backlog")
	for _, q := range h.dir.adminEventQueries() {
		assert.False(t, q.From.Before(start), "every query asks from the saved position or later: %v", q.From)
	}
}

// Keycloak's dateFrom is inclusive and a bulk change records many events in
// one millisecond: a full page of them does not move the position, so the
// next page is asked for by First rather than the same one again. Each event
// is handled once, and a failure after the first page keeps that page's
// progress.
func TestWatcherHandlesEventsSharingOneMillisecond(t *testing.T) {
	h := newHarness(t)
	at := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	users := h.dir.addUserEvents(280, func(i int) time.Time {
		if i < 250 {
			return at
		}
		return at.Add(time.Duration(i-249) * time.Millisecond)
	})
	h.dir.eventsFail = func(n int) error {
		if n == 3 {
			return errKeycloakDown
		}
		return nil
	}
	w, counter := newPoller(t, h, at.Add(-time.Second).UnixMilli())
	// Re-asking the same page would go on until the poll's deadline.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()

	require.Error(t, w.poll(ctx), "the third call fails")
	kept := 0
	for _, u := range users {
		kept += counter.of(u)
	}
	assert.Equal(t, eventsPage, kept, "the first page is handled before the failure")

	require.NoError(t, w.poll(ctx))
	for _, u := range users {
		require.Equal(t, 1, counter.of(u), "user %s invalidated once", u)
	}
	calls := len(h.dir.adminEventQueries())
	require.NoError(t, w.poll(ctx))
	for _, u := range users {
		require.Equal(t, 1, counter.of(u), "user %s not invalidated again", u)
	}
	assert.Less(t, len(h.dir.adminEventQueries())-calls, 5, "a poll with nothing new pages once past the last millisecond's events")
}

// A position older than 24 h (a fleet without a watcher for days) is not
// resumed: each list a route serves was fetched within the last 24 h, after
// any older change. The clamp is logged once, with the position's age.
func TestWatcherResumesAtMost24hBack(t *testing.T) {
	logs := logtest.Capture(t, slog.LevelInfo)
	h := newHarness(t)
	now := time.Now()
	h.dir.addEvent(keycloak.AdminEvent{ID: "ev-old", Time: now.Add(-30 * time.Hour), OperationType: "UPDATE",
		ResourceType: keycloak.ResourceUser, ResourcePath: "users/u-old"})
	h.dir.addEvent(keycloak.AdminEvent{ID: "ev-new", Time: now.Add(-time.Hour), OperationType: "UPDATE",
		ResourceType: keycloak.ResourceUser, ResourcePath: "users/u-new"})
	w, counter := newPoller(t, h, now.Add(-48*time.Hour).UnixMilli())

	require.NoError(t, w.poll(t.Context()))
	queries := h.dir.adminEventQueries()
	require.NotEmpty(t, queries)
	assert.WithinDuration(t, now.Add(-24*time.Hour), queries[0].From, time.Minute)
	assert.Equal(t, 0, counter.of("u-old"), "a change older than 24 h is in every list still served")
	assert.Equal(t, 1, counter.of("u-new"))
	const clamped = "admin event watcher position too old"
	require.Equal(t, 1, logs.Count(clamped), logs.String())
	assert.Contains(t, logs.String(), "position_age=48h0m")

	// The position saved is within 24 h: the next poll does not clamp again.
	require.NoError(t, w.poll(t.Context()))
	assert.Equal(t, 1, logs.Count(clamped))
}

// addMemberEvents adds, for each of n users (m-000, m-001, ...), the event
// Keycloak 26.5 records when a member is added to an organization: the
// representation is the organization, the member is named only by username,
// so handling it takes a user search.
func (d *fakeDirectory) addMemberEvents(n int, at time.Time) []string {
	users := make([]string, n)
	for i := range users {
		users[i] = fmt.Sprintf("m-%03d", i)
		d.addEvent(keycloak.AdminEvent{ID: "ev-" + users[i], Time: at.Add(time.Duration(i) * time.Millisecond),
			OperationType: "CREATE", ResourceType: keycloak.ResourceOrganizationMembership,
			ResourcePath:   "organizations/org-1/members",
			Representation: `{"id":"org-1","name":"Acme","alias":"acme"}`,
			Details:        map[string]string{"username": users[i]}})
	}
	return users
}

// A bulk change (members added by a script) is a backlog of events that each
// need a Keycloak read. They are read several at a time, never more than
// resolveConcurrency, and every member is still invalidated once. Read one
// after another, 60 reads of 20 ms held every later change behind them for
// over a second.
func TestWatcherResolvesABacklogConcurrently(t *testing.T) {
	h := newHarness(t)
	users := h.dir.addMemberEvents(60, time.Now().Add(-time.Minute).Truncate(time.Millisecond))
	var searches overlap
	h.dir.onUsername = func(context.Context, string) error {
		defer searches.enter()()
		time.Sleep(20 * time.Millisecond)
		return nil
	}
	w, counter := newPoller(t, h, time.Now().Add(-2*time.Minute).UnixMilli())

	require.NoError(t, w.poll(t.Context()))
	for _, u := range users {
		assert.Equal(t, 1, counter.of(u), "member %s invalidated once", u)
	}
	assert.Greater(t, searches.highest(), 1, "the searches overlapped")
	assert.LessOrEqual(t, searches.highest(), resolveConcurrency, "at most resolveConcurrency searches at once")
}

// When one event of a page cannot be resolved, the events before it are
// handled (their reads still in flight are not cut short) and none after it:
// the position stays before the failed event, and the next poll handles it and
// the rest, each once.
func TestWatcherStopsAtTheEventThatFailed(t *testing.T) {
	h := newHarness(t)
	users := h.dir.addMemberEvents(30, time.Now().Add(-time.Minute).Truncate(time.Millisecond))
	var failing atomic.Bool
	failing.Store(true)
	h.dir.onUsername = func(ctx context.Context, name string) error {
		if name == users[9] && failing.Load() {
			return errKeycloakDown
		}
		if name < users[9] {
			// The events before the failed one answer after it failed.
			return pause(ctx, 30*time.Millisecond)
		}
		return nil
	}
	w, counter := newPoller(t, h, time.Now().Add(-2*time.Minute).UnixMilli())

	require.ErrorIs(t, w.poll(t.Context()), errKeycloakDown)
	for i, u := range users {
		want := 0
		if i < 9 {
			want = 1
		}
		assert.Equal(t, want, counter.of(u), "member %d invalidated by the failing poll", i)
	}

	failing.Store(false)
	require.NoError(t, w.poll(t.Context()))
	for i, u := range users {
		assert.Equal(t, 1, counter.of(u), "member %d invalidated once in all", i)
	}
}

// A poll cut short by its deadline keeps what it did: the position is saved
// past the events it handled, in the shared cache (Redis), although the poll's
// own context has expired by then. Saved with that context, the save failed,
// and a page slower than one poll's budget was started over on every poll:
// the same members invalidated again and again, the page never finished.
func TestWatcherKeepsProgressOfAPollCutShort(t *testing.T) {
	h := newRedisHarness(t, redistest.Start(t).URL(), "")
	users := h.dir.addMemberEvents(60, time.Now().Add(-time.Minute).Truncate(time.Millisecond))
	h.dir.onUsername = func(ctx context.Context, _ string) error { return pause(ctx, 100*time.Millisecond) }
	w, counter := newPoller(t, h, time.Now().Add(-2*time.Minute).UnixMilli())

	polls := 0
	for ; polls < 10; polls++ {
		// Each poll has time for about 3 rounds of 8 searches: 60 need 3 polls.
		ctx, cancel := context.WithTimeout(t.Context(), 350*time.Millisecond)
		err := w.poll(ctx)
		cancel()
		if err == nil {
			break
		}
		require.ErrorIs(t, err, context.DeadlineExceeded)
	}
	require.Less(t, polls, 10, "the page is finished")
	for i, u := range users {
		assert.Equal(t, 1, counter.of(u), "member %d invalidated once", i)
	}
}

// slowOrganizationEvent adds three members of acme and an UPDATE of acme,
// whose members the watcher lists to invalidate them; a page of them takes
// listFor. It returns the members and the most listings seen at once.
func slowOrganizationEvent(h *harness, listFor time.Duration) ([]string, func() int) {
	members := []string{"u-big-1", "u-big-2", "u-big-3"}
	for _, u := range members {
		h.dir.addUser(u, true, acme)
	}
	h.dir.addEvent(keycloak.AdminEvent{ID: "ev-acme", Time: time.Now().Add(-time.Second), OperationType: "UPDATE",
		ResourceType: keycloak.ResourceOrganization, ResourcePath: "organizations/" + acme.ID})
	listings := &overlap{}
	h.dir.onMembers = func(ctx context.Context, _ string) error {
		defer listings.enter()()
		return pause(ctx, listFor)
	}
	return members, listings.highest
}

// startWatcher runs a watcher as StartWatcher does, with the test's lease
// ttl and first poll budget.
func startWatcher(t *testing.T, h *harness, leaseFor, budget time.Duration) *Watcher {
	t.Helper()
	w := &Watcher{deps: &h.plugin.deps, interval: 20 * time.Millisecond, leaseFor: leaseFor, pollBudget: budget,
		stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	t.Cleanup(w.Stop)
	return w
}

// Work that needs longer than a poll's time (here a page of an
// organization's members from a Keycloak under load) does not stop the
// watcher for good: each poll that runs out of time on it gives the next twice
// the time, until it is done. With a fixed budget every poll failed on it, and
// no later change got through.
func TestWatcherGivesASlowEventMoreTime(t *testing.T) {
	h := newHarness(t)
	logs := logtest.Capture(t, slog.LevelWarn)
	savePosition(t, h, time.Now().Add(-time.Minute).UnixMilli())
	members, _ := slowOrganizationEvent(h, 300*time.Millisecond)
	counter := countInvalidations(h)
	startWatcher(t, h, 0, 100*time.Millisecond)

	require.Eventually(t, func() bool { return counter.of(members[0]) > 0 }, 5*time.Second, 10*time.Millisecond,
		"the organization's members are invalidated:\n%s", logs.String())
	for _, u := range members {
		assert.Equal(t, 1, counter.of(u), "member %s invalidated once", u)
	}
	assert.GreaterOrEqual(t, warnings(logs, "the next poll gets longer"), 1, "a poll ran out of time:\n%s", logs.String())
}

// A poll longer than the watcher's lease keeps the lease (it is renewed while
// the poll runs): another runner does not take it and poll the same events at
// the same time.
func TestWatcherKeepsItsLeaseThroughALongPoll(t *testing.T) {
	h := newHarness(t)
	savePosition(t, h, time.Now().Add(-time.Minute).UnixMilli())
	members, most := slowOrganizationEvent(h, 900*time.Millisecond)
	counter := countInvalidations(h)
	const leaseFor = 300 * time.Millisecond
	startWatcher(t, h, leaseFor, 2*time.Second)
	require.Eventually(t, func() bool { return most() == 1 }, 2*time.Second, time.Millisecond, "the first runner lists the members")
	startWatcher(t, h, leaseFor, 2*time.Second) // a second runner of the fleet

	require.Eventually(t, func() bool { return counter.of(members[0]) > 0 }, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, 1, most(), "one runner at a time lists the members")
}

func TestNextPollBudget(t *testing.T) {
	first := 5 * time.Second
	for _, c := range []struct {
		name    string
		budget  time.Duration
		handled int
		err     error
		ranOut  bool
		want    time.Duration
	}{
		{"ran out on one event", 5 * time.Second, 0, context.DeadlineExceeded, true, 10 * time.Second},
		{"at most maxPollBudget", 90 * time.Second, 0, context.DeadlineExceeded, true, maxPollBudget},
		{"ran out after progress", 10 * time.Second, 3, context.DeadlineExceeded, true, 10 * time.Second},
		{"failed otherwise", 40 * time.Second, 0, errKeycloakDown, false, 40 * time.Second},
		{"succeeded", 40 * time.Second, 1, nil, false, first},
	} {
		assert.Equal(t, c.want, nextBudget(c.budget, first, c.handled, c.err, c.ranOut), c.name)
	}
}

// Many users are invalidated in batches of invalidateBatch, each its own Redis
// pipeline and pub/sub message, and the log line gives the count and a few of
// them rather than every id (an organization of 50 000 members was one 22 MB
// message and a 1.9 MB log line).
func TestInvalidatingManyUsersGoesInBatches(t *testing.T) {
	h := newHarness(t)
	logs := logtest.Capture(t, slog.LevelInfo)
	counter := countInvalidations(h)
	users := make([]string, 2500)
	for i := range users {
		users[i] = fmt.Sprintf("u-%05d", i)
	}

	require.NoError(t, invalidateUsers(t.Context(), h.plugin.deps, users, InvalidatedByWebhook))
	for i, u := range users {
		require.Equal(t, 1, counter.of(u), "user %d invalidated once", i)
	}
	perUser := len(userKeys(testRealm, "u-00000"))
	assert.Equal(t, []int{1000 * perUser, 1000 * perUser, 500 * perUser}, counter.sizes, "batches of 1000 users")
	line := ""
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "cached memberships invalidated") {
			line = l
		}
	}
	assert.Contains(t, line, "count=2500")
	assert.Less(t, len(line), 2000, "the log line names a few users, not all: %.300s", line)
}

// addOrganizationUpdate adds n members of acme (u-00000, ...) and an UPDATE of
// acme at time at: an event that touches every member.
func (d *fakeDirectory) addOrganizationUpdate(n int, at time.Time) []string {
	members := make([]string, n)
	for i := range members {
		members[i] = fmt.Sprintf("u-%05d", i)
		d.addUser(members[i], true, acme)
	}
	d.addEvent(keycloak.AdminEvent{ID: "ev-acme-update", Time: at, OperationType: "UPDATE",
		ResourceType: keycloak.ResourceOrganization, ResourcePath: "organizations/" + acme.ID})
	return members
}

// An event that touches every member of an organization is queued, not listed
// where the events are read: the members are invalidated a page at a time
// after the poll, and how far it got is kept in the shared cache, so that
// another runner taking the lease over goes on from there.
func TestWatcherRefreshesAnOrganizationPageByPage(t *testing.T) {
	h := newHarness(t)
	members := h.dir.addOrganizationUpdate(250, time.Now().Add(-time.Second))
	w, counter := newPoller(t, h, time.Now().Add(-time.Minute).UnixMilli())

	require.NoError(t, w.poll(t.Context()))
	assert.Equal(t, 0, counter.of(members[0]), "the poll lists no member")
	require.NoError(t, w.refreshOrgs(t.Context(), 0), "one page")
	assert.Equal(t, 1, counter.of(members[99]))
	assert.Equal(t, 0, counter.of(members[100]))

	other := &Watcher{deps: w.deps, interval: time.Second} // the lease's next holder
	require.NoError(t, other.refreshOrgs(t.Context(), time.Minute))
	for i, u := range members {
		assert.Equal(t, 1, counter.of(u), "member %d invalidated once", i)
	}
	left, err := other.orgRefreshes(t.Context())
	require.NoError(t, err)
	assert.Empty(t, left)
}

// A second change to an organization whose members are being invalidated
// starts them over: the members done before it may have cached the
// organization as it was.
func TestWatcherRestartsAnOrganizationChangedAgain(t *testing.T) {
	h := newHarness(t)
	members := h.dir.addOrganizationUpdate(250, time.Now().Add(-2*time.Second))
	w, counter := newPoller(t, h, time.Now().Add(-time.Minute).UnixMilli())
	require.NoError(t, w.poll(t.Context()))
	require.NoError(t, w.refreshOrgs(t.Context(), 0))
	h.dir.addEvent(keycloak.AdminEvent{ID: "ev-acme-again", Time: time.Now().Add(-time.Second), OperationType: "UPDATE",
		ResourceType: keycloak.ResourceOrganization, ResourcePath: "organizations/" + acme.ID})

	require.NoError(t, w.poll(t.Context()))
	require.NoError(t, w.refreshOrgs(t.Context(), time.Minute))
	assert.Equal(t, 2, counter.of(members[0]), "done before the second change, done again")
	assert.Equal(t, 1, counter.of(members[249]))
}

// The members of a large organization (Keycloak lists about 170 a second)
// do not hold up the events behind its change: an admin's sign-out is revoked
// while they are still being invalidated.
func TestWatcherRevokesWhileAnOrganizationIsRefreshed(t *testing.T) {
	h := newHarness(t)
	rev := newRecordingRevoker(t, h.store)
	counter := countInvalidations(h)
	h.plugin.deps.Revocations = rev
	savePosition(t, h, time.Now().Add(-time.Minute).UnixMilli())
	members := h.dir.addOrganizationUpdate(1000, time.Now().Add(-2*time.Second))
	h.dir.onMembers = func(ctx context.Context, _ string) error { return pause(ctx, 300*time.Millisecond) } // a page
	h.dir.addEvent(keycloak.AdminEvent{ID: "ev-logout", Time: time.Now().Add(-time.Second), OperationType: "ACTION",
		ResourceType: keycloak.ResourceUser, ResourcePath: "users/u-alice/logout"})
	startWatcher(t, h, 0, 0)

	issued := time.Now().Add(-time.Minute)
	require.Eventually(t, func() bool { return rev.Revoked(testIssuer, "sid", "u-alice", issued) },
		2*time.Second, 10*time.Millisecond, "the sign-out is revoked")
	assert.Equal(t, 0, counter.of(members[999]), "while the organization's last page is still to come")
	require.Eventually(t, func() bool { return counter.of(members[999]) == 1 }, 10*time.Second, 10*time.Millisecond,
		"every member is invalidated in the end")
}

// An event that fails every time (here a user search Keycloak keeps failing)
// stops the events behind it, by design, but not the organizations queued
// before it: their members are still invalidated.
func TestWatcherRefreshesOrganizationsBehindAFailingEvent(t *testing.T) {
	h := newHarness(t)
	savePosition(t, h, time.Now().Add(-time.Minute).UnixMilli())
	members := h.dir.addOrganizationUpdate(3, time.Now().Add(-2*time.Second))
	h.dir.addMemberEvents(1, time.Now().Add(-time.Second))
	h.dir.onUsername = func(context.Context, string) error { return errKeycloakDown }
	counter := countInvalidations(h)
	startWatcher(t, h, 0, 0)

	require.Eventually(t, func() bool { return counter.of(members[2]) == 1 }, 3*time.Second, 10*time.Millisecond,
		"the organization's members are invalidated although the poll keeps failing")
}
