package orgsync

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apisix-identity-runner/apisix-identity-runner/cache"
	"github.com/apisix-identity-runner/apisix-identity-runner/keycloak"
)

// Names in the shared cache of the watcher's lease and position.
const (
	watcherLease    = "orgsync:events:lease"
	watcherPosition = "orgsync:events:position"
)

// watchedResources are the admin events that change a cached claim or end
// sessions. Groups and role mappings are watched whatever the routes refresh:
// the watcher is one per fleet, and an unneeded invalidation costs one
// refetch.
var watchedResources = []string{
	keycloak.ResourceOrganizationMembership, keycloak.ResourceOrganization, keycloak.ResourceUser,
	keycloak.ResourceGroupMembership, keycloak.ResourceRealmRoleMapping, keycloak.ResourceUserSession,
	keycloak.ResourceClientRoleMapping,
}

// organizationGroupResources are watched only once Keycloak has shown it has
// organization groups (26.6+): an older Keycloak answers 500 to a query naming
// them, which would fail every poll.
var organizationGroupResources = []string{
	keycloak.ResourceOrganizationGroupMembership, keycloak.ResourceOrganizationGroup,
}

// organizationGroupsReprobe is how long a Keycloak that did not know the
// organization group events is taken at its word before it is asked again
// (an upgrade in place).
const organizationGroupsReprobe = 10 * time.Minute

// eventsPage is how many admin events one call asks for.
const eventsPage = 100

// Watcher polls Keycloak's admin events and invalidates the users they touch.
// One runner of the fleet polls at a time (a lease in the shared cache); its
// position is kept in the cache, so it survives a restart and a hand-over.
type Watcher struct {
	deps     *Deps
	interval time.Duration
	stop     chan struct{}
	done     chan struct{}
	once     sync.Once
	// orgGroups: Keycloak has organization groups, so their events are
	// asked for; orgGroupsProbed is when it last said it has none.
	orgGroups       bool
	orgGroupsProbed time.Time
	orgGroupsLogged bool
	leaseFor        time.Duration // the lease's ttl; 0 is leaseTTL(interval) (tests shorten it to lose the lease)
	pollBudget      time.Duration // a poll's time at first; 0 is interval + 5 s (tests shorten it)
}

// maxPollBudget is the most time one poll gets (see nextBudget).
const maxPollBudget = 2 * time.Minute

// resources are the event types this poll asks for.
func (w *Watcher) resources(ctx context.Context) []string {
	if !w.orgGroups && time.Since(w.orgGroupsProbed) >= organizationGroupsReprobe {
		known, err := w.deps.Keycloak.OrganizationGroupsSupported(ctx)
		switch {
		case err != nil:
			// It could not tell: asked again at the next poll.
		case known:
			w.orgGroups = true
			logger().Info("admin event watcher follows organization group events (Keycloak 26.6+)")
		default:
			w.orgGroupsProbed = time.Now()
			if !w.orgGroupsLogged {
				w.orgGroupsLogged = true
				logger().Info("organization group events not watched: Keycloak before 26.6, or no organization yet; asked again every 10 minutes")
			}
		}
	}
	if w.orgGroups {
		return append(slices.Clone(watchedResources), organizationGroupResources...)
	}
	return watchedResources
}

// StartWatcher starts polling every interval (KEYCLOAK_EVENTS_INTERVAL).
func StartWatcher(d *Deps, interval time.Duration) *Watcher {
	if d.Revocations == nil {
		logger().Info("admin event watcher has no revocation store: sessions an admin ends are not revoked at the gateway")
	}
	w := &Watcher{deps: d, interval: interval, stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

// Stop ends polling (a poll under way is cancelled) and gives the lease up
// so another runner takes over at its next tick rather than after the lease
// runs out. Call it as soon as the runner is told to stop, before draining
// calls: a drain under load lasts the whole grace period, and the fleet would
// have no watcher meanwhile.
func (w *Watcher) Stop() {
	w.once.Do(func() { close(w.stop) })
	<-w.done
}

// leaseTTL is how long the watcher's lease lasts without renewal: three polls,
// at least 10 s. It bounds the hand-over when a holder dies without releasing.
func leaseTTL(interval time.Duration) time.Duration {
	return max(3*interval, 10*time.Second)
}

func (w *Watcher) run() {
	defer close(w.done)
	base, cancelAll := context.WithCancel(context.Background())
	defer cancelAll()
	go func() {
		select {
		case <-w.stop:
			cancelAll()
		case <-base.Done():
		}
	}()
	ttl := leaseTTL(w.interval)
	if w.leaseFor > 0 {
		ttl = w.leaseFor
	}
	var lease *cache.Lease
	defer func() {
		if lease != nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			if err := lease.Release(ctx); err != nil {
				logger().Warn("admin event watcher lease not released; another runner takes over when it expires",
					"expires_within", ttl.String(), "error", err)
			}
			cancel()
		}
	}()
	ticker := time.NewTicker(w.interval)
	defer ticker.Stop()
	var st watchState
	// Runs before the lease's release above: the end of what this runner
	// reported comes before the hand-over it makes.
	defer st.stopped()
	firstBudget := w.pollBudget
	if firstBudget <= 0 {
		firstBudget = w.interval + 5*time.Second
	}
	budget := firstBudget
	for {
		ctx, cancel := context.WithTimeout(base, budget)
		lease = w.holdLease(ctx, lease, ttl, &st)
		if lease != nil {
			renewing := keepLease(ctx, cancel, lease, ttl)
			handled, err := w.pollEvents(ctx)
			// Also after a failed poll: an event that fails every time must
			// not starve the organizations queued before it.
			if rerr := w.refreshOrgs(ctx, orgRefreshSlice); err == nil {
				err = rerr
			}
			renewing.stop()
			budget = nextBudget(budget, firstBudget, handled, err, errors.Is(ctx.Err(), context.DeadlineExceeded))
			if base.Err() != nil {
				cancel()
				return // stopping: a cancelled poll is not a failure
			}
			if err != nil {
				pollsError.Inc()
			} else {
				pollsOK.Inc()
			}
			if (err != nil) != st.failing {
				st.failing = err != nil
				if st.failing {
					logger().Warn("admin event poll failing; memberships fall back to fresh_ttl", "error", err)
				} else {
					logger().Warn("admin event poll recovered")
				}
			}
		} else {
			pollsNotLeader.Inc()
		}
		cancel()
		select {
		case <-w.stop:
			return
		case <-ticker.C:
		}
	}
}

// watchState is what the watcher has reported, so that each degraded state
// logged at warn gets its end logged at warn too, once.
type watchState struct {
	failing bool // "admin event poll failing" is standing
	lost    bool // "lease lost" is standing
}

// stopped ends, at warn, what is still standing when the watcher stops (a
// hand-over on SIGTERM): the next holder reports its own polls, and a
// failure logged here with no end would read as one that never ended.
func (st *watchState) stopped() {
	if st.failing {
		st.failing = false
		logger().Warn("admin event watcher stopped; its failing poll stops here")
	}
	if st.lost {
		st.lost = false
		logger().Warn("admin event watcher stopped; the lease it lost is another runner's to take")
	}
}

func (w *Watcher) holdLease(ctx context.Context, lease *cache.Lease, ttl time.Duration, st *watchState) *cache.Lease {
	if lease != nil {
		if ok, err := lease.Renew(ctx); ok || err != nil {
			// On a Redis error keep polling: the lease may still be ours, and
			// two pollers for a moment cost only duplicate invalidations.
			return lease
		}
		// The lease ran out (Redis restarted, or a renewal came too late).
		// This runner stops polling, so a failure it reported ends here.
		st.lost = true
		if st.failing {
			st.failing = false
			logger().Warn("admin event watcher lease lost; its failing poll stops here")
		} else {
			logger().Warn("admin event watcher lease lost")
		}
	}
	l, ok, err := w.deps.Cache.AcquireLease(ctx, watcherLease, ttl)
	switch {
	case err != nil:
		return nil // Redis is down: the cache reports that, once
	case ok && st.lost:
		st.lost = false
		logger().Warn("admin event watcher lease taken again")
	case ok:
		logger().Info("admin event watcher lease taken")
	case st.lost:
		st.lost = false
		logger().Warn("admin event watcher lease held by another runner; this one stands by")
	}
	if !ok {
		return nil
	}
	return l
}

// position is the time of the newest event handled and the ids of the events
// at exactly that millisecond (Keycloak's dateFrom is inclusive).
type position struct {
	at  int64
	ids map[string]bool
}

func (p position) String() string {
	ids := make([]string, 0, len(p.ids))
	for id := range p.ids {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return strconv.FormatInt(p.at, 10) + "|" + strings.Join(ids, ",")
}

func parsePosition(s string) (position, error) {
	at, ids, _ := strings.Cut(s, "|")
	ms, err := strconv.ParseInt(at, 10, 64)
	if err != nil {
		return position{}, fmt.Errorf("orgsync: watcher position %q: %w", s, err)
	}
	p := position{at: ms, ids: map[string]bool{}}
	for _, id := range strings.Split(ids, ",") {
		if id != "" {
			p.ids[id] = true
		}
	}
	return p, nil
}

// maxListAge is the oldest an organization list is served at: fresh_ttl and
// stale_ttl are at most 24 h (setup.go), and the cache keeps no value past
// its Retention (24 h) even as a fallback while Keycloak fails. A change
// older than that is already in every list a route still serves, so the
// watcher never resumes further back: after a long stop it would otherwise
// spend its polls on events that change nothing.
const maxListAge = 24 * time.Hour

// nextBudget is the time the poll after one that had budget gets. A poll that
// ran out of time without handling an event is stuck on work that needs longer
// (a user search or a page of members from a Keycloak under load): the next gets
// twice the time, up to maxPollBudget, where a fixed budget would stop the
// watcher for good. A poll that succeeded brings it back to first; one that
// failed otherwise (Keycloak down) leaves it as it is.
func nextBudget(budget, first time.Duration, handled int, pollErr error, ranOut bool) time.Duration {
	switch {
	case ranOut && handled == 0:
		next := min(2*budget, maxPollBudget)
		if next > budget {
			logger().Warn("admin event poll ran out of time on one event; the next poll gets longer",
				"budget", budget.String(), "next_budget", next.String())
		}
		return next
	case pollErr == nil:
		return first
	}
	return budget
}

// leaseKeeper renews the watcher's lease while a poll runs.
type leaseKeeper struct {
	quit, done chan struct{}
}

// keepLease renews lease every third of its ttl until stop, so that a poll
// longer than the lease (see nextBudget) keeps it: another runner would poll
// the same events meanwhile. A lease found lost cancels the poll.
func keepLease(ctx context.Context, cancelPoll context.CancelFunc, lease *cache.Lease, ttl time.Duration) *leaseKeeper {
	k := &leaseKeeper{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(k.done)
		tick := time.NewTicker(ttl / 3)
		defer tick.Stop()
		for {
			select {
			case <-k.quit:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
				if ok, err := lease.Renew(ctx); !ok && err == nil {
					cancelPoll() // the next holdLease reports the loss
					return
				}
			}
		}
	}()
	return k
}

func (k *leaseKeeper) stop() {
	close(k.quit)
	<-k.done
}

// pollEvents handles the admin events since the saved position, and returns
// how many it handled.
func (w *Watcher) pollEvents(ctx context.Context) (handled int, _ error) {
	c, kc := w.deps.Cache, w.deps.Keycloak
	now := time.Now()
	pos := position{at: now.Add(-w.interval).UnixMilli(), ids: map[string]bool{}}
	if s, err := c.GetState(ctx, watcherPosition); err == nil {
		if p, err := parsePosition(s); err == nil {
			pos = p
		}
	} else if !errors.Is(err, cache.ErrMiss) {
		return 0, fmt.Errorf("orgsync: watcher position: %w", err)
	}
	if horizon := now.Add(-maxListAge).UnixMilli(); pos.at < horizon {
		logger().Info("admin event watcher position too old: events older than any list still served are skipped",
			"position_age", now.Sub(time.UnixMilli(pos.at)).Round(time.Second).String(),
			"resumes_from", time.UnixMilli(horizon).UTC().Format(time.RFC3339))
		pos = position{at: horizon, ids: map[string]bool{}}
	}
	resources := w.resources(ctx)
	// Each page is handled and the position saved before the next is asked
	// for: a poll cut short by its deadline or a failure keeps what it did,
	// so a backlog longer than one poll is still worked off.
	for first := 0; ; {
		page, err := kc.AdminEvents(ctx, keycloak.AdminEventQuery{ResourceTypes: resources,
			From: time.UnixMilli(pos.at), First: first, Max: eventsPage, Ascending: true})
		if err != nil {
			return handled, fmt.Errorf("orgsync: admin events since %d: %w", pos.at, err)
		}
		if !slices.IsSortedFunc(page, func(a, b keycloak.AdminEvent) int {
			return cmp.Compare(a.Time.UnixMilli(), b.Time.UnixMilli())
		}) {
			// Newest first, handling this page would move the position past
			// the older events of the pages still to come.
			return handled, fmt.Errorf("orgsync: admin events since %d came newest first (Keycloak before 26 ignores direction=asc)", pos.at)
		}
		pageFrom := pos.at
		n, err := w.handlePage(ctx, page, &pos)
		handled += n
		if err != nil {
			// Keep the position before the event that failed: it is handled
			// again next time. A failure to save it too is part of the same
			// failing poll.
			_ = w.save(ctx, pos)
			return handled, err
		}
		// An unsaved position fails the poll: it is reported (and its recovery)
		// as "admin event poll failing", and the events are handled again.
		if err := w.save(ctx, pos); err != nil {
			return handled, err
		}
		if len(page) < eventsPage {
			break
		}
		// dateFrom is inclusive, so asking again from a later position
		// returns only the events at its millisecond as old ones. A full page
		// all at one millisecond would come back the same: page past it.
		if pos.at == pageFrom {
			first += eventsPage
		} else {
			first = 0
		}
	}
	if handled == 0 {
		metricWatcherLag.Set(0)
	}
	return handled, nil
}

// handlePage handles the events of page not handled before pos, in order,
// moving pos past each one handled; the first that fails ends the page with
// its error. Keycloak is read for up to resolveConcurrency events at a time,
// ahead of the event being applied.
func (w *Watcher) handlePage(ctx context.Context, page []keycloak.AdminEvent, pos *position) (handled int, err error) {
	handledBefore := func(ev keycloak.AdminEvent) bool {
		ms := ev.Time.UnixMilli()
		return ms < pos.at || ms == pos.at && ev.ID != "" && pos.ids[ev.ID]
	}
	reads := w.startResolving(ctx, page, handledBefore)
	defer reads.stop()
	for i, ev := range page {
		if handledBefore(ev) {
			continue
		}
		r := reads.wait(i)
		// The revocation comes first: it is what ends a session at the
		// gateway; an invalidation only refreshes claims.
		err := r.err
		if err == nil {
			err = w.revoke(ctx, ev, r.end)
		}
		if err == nil && r.refreshOrg != "" {
			err = w.queueOrgRefresh(ctx, r.refreshOrg)
		}
		if err == nil {
			err = invalidateUsers(ctx, *w.deps, dedupe(r.users), InvalidatedByEvents)
		}
		if err != nil {
			return handled, err
		}
		if ms := ev.Time.UnixMilli(); ms > pos.at {
			*pos = position{at: ms, ids: map[string]bool{}}
		}
		pos.ids[ev.ID] = true
		handled++
		metricWatcherLag.Set(time.Since(ev.Time).Seconds())
	}
	return handled, nil
}

// watcherOrgRefreshes names, in the shared cache, the organizations whose
// members the watcher has still to invalidate, and how far it got.
const watcherOrgRefreshes = "orgsync:events:org-refreshes"

// orgRefreshSlice is about how long, after each poll, the watcher works on the
// organizations whose members it has to invalidate (at least one page of 100).
const orgRefreshSlice = time.Second

// orgRefresh is an organization whose members are being invalidated page by
// page; Next is the first member not done yet.
type orgRefresh struct {
	Org  string `json:"org"`
	Next int    `json:"next"`
}

func (w *Watcher) orgRefreshes(ctx context.Context) ([]orgRefresh, error) {
	s, err := w.deps.Cache.GetState(ctx, watcherOrgRefreshes)
	if errors.Is(err, cache.ErrMiss) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("orgsync: organizations to refresh: %w", err)
	}
	var list []orgRefresh
	if err := json.Unmarshal([]byte(s), &list); err != nil {
		// Written by this code only (the cache seals its state): another
		// version's. The organizations left in it fall back to fresh_ttl.
		logger().Warn("organizations to refresh unreadable; their members fall back to fresh_ttl", "error", err)
		return nil, nil
	}
	return list, nil
}

func (w *Watcher) saveOrgRefreshes(ctx context.Context, list []orgRefresh) error {
	if list == nil {
		list = []orgRefresh{}
	}
	b, err := json.Marshal(list)
	if err == nil {
		err = w.deps.Cache.SetState(ctx, watcherOrgRefreshes, string(b))
	}
	if err != nil {
		return fmt.Errorf("orgsync: organizations to refresh not saved: %w", err)
	}
	return nil
}

// queueOrgRefresh records that every member of org is to be invalidated: from
// the first member again if it was under way, since the members already done
// may have cached the organization as it was before this change.
func (w *Watcher) queueOrgRefresh(ctx context.Context, org string) error {
	list, err := w.orgRefreshes(ctx)
	if err != nil {
		return err
	}
	queued := false
	for i := range list {
		if list[i].Org == org {
			list[i].Next, queued = 0, true
		}
	}
	if !queued {
		list = append(list, orgRefresh{Org: org})
	}
	return w.saveOrgRefreshes(ctx, list)
}

// refreshOrgs invalidates the members of the queued organizations a page at a
// time, for about slice, saving how far it got after each page. An event that
// touches every member of an organization is queued rather than listed where
// it is read: Keycloak 26.5 answered about 170 members a second on a 2-core
// test machine (0.6 s a page), so 20 000 members would take about two minutes,
// and every event behind them waited, an admin's sign-outs among them.
func (w *Watcher) refreshOrgs(ctx context.Context, slice time.Duration) error {
	list, err := w.orgRefreshes(ctx)
	if err != nil || len(list) == 0 {
		return err
	}
	end := time.Now().Add(slice)
	for len(list) > 0 {
		cur := &list[0]
		ids, more, err := w.deps.Keycloak.OrganizationMemberPage(ctx, cur.Org, cur.Next)
		switch {
		case errors.Is(err, keycloak.ErrOrganizationNotFound):
			// Deleted with its members: they are not listed any more; the
			// fresh_ttl backstop covers them.
			more = false
		case err != nil:
			return fmt.Errorf("orgsync: members of organization %s: %w", cur.Org, err)
		default:
			if err := invalidateUsers(ctx, *w.deps, ids, InvalidatedByEvents); err != nil {
				return err
			}
		}
		if more {
			cur.Next += len(ids)
		} else {
			logger().Info("organization's members invalidated", "organization", cur.Org, "members", cur.Next+len(ids))
			list = list[1:]
		}
		if err := w.saveOrgRefreshes(ctx, list); err != nil {
			return err
		}
		if !time.Now().Before(end) {
			break
		}
	}
	return nil
}

// positionSaveTimeout bounds the save of the position of a poll that ran out
// of time.
const positionSaveTimeout = time.Second

// save records pos in the shared cache. A poll that ran out of time still
// saves what it did, with a budget of its own: saved with the poll's expired
// context, the save failed, and a page slower than one poll was started over
// on every poll and never finished. A poll cancelled because the watcher
// stops does not wait on the save; the next holder handles those events again.
func (w *Watcher) save(ctx context.Context, pos position) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), positionSaveTimeout)
		defer cancel()
	}
	if err := w.deps.Cache.SetState(ctx, watcherPosition, pos.String()); err != nil {
		return fmt.Errorf("orgsync: watcher position not saved: %w", err)
	}
	return nil
}

// DefaultRevocationLifetime is how long the watcher keeps a revocation when
// Deps.RevocationLifetime is zero: Keycloak's default SSO Session Max, the
// longest a token of an ended session can still be presented with the
// realm's defaults.
const DefaultRevocationLifetime = 10 * time.Hour

// Why the watcher revoked (metric label, log field).
const (
	RevokedBySignOut        = "sign_out"        // an admin signed the user out of every session
	RevokedBySessionDeleted = "session_deleted" // an admin ended one session
	RevokedByUserDisabled   = "user_disabled"
	RevokedByUserDeleted    = "user_deleted"
)

// sessionEnd is what an admin event says about sessions: every session of
// subject, or the one session sessionID, ended.
type sessionEnd struct {
	sessionID, subject, cause string
}

// endedSessions reads the sessions an admin event ends. Keycloak 26.5 and
// 26.7 record (test/integration TestAdminEventsOfSessionEnds holds these):
//
//	sign-out of a user  USER ACTION users/{id}/logout
//	one session ended   USER_SESSION DELETE sessions/{sid} (the user is not named)
//	user disabled       USER UPDATE users/{id}, representation {"enabled":false,...}
//	user deleted        USER DELETE users/{id}
//
// A user update recorded without its representation (the realm's "include
// representation" off) is checked with Keycloak. nil: the event ends no session.
func endedSessions(ctx context.Context, kc Directory, ev keycloak.AdminEvent) (*sessionEnd, error) {
	parts := strings.Split(strings.Trim(ev.ResourcePath, "/"), "/")
	switch {
	case ev.ResourceType == keycloak.ResourceUserSession && ev.OperationType == "DELETE" &&
		len(parts) == 2 && parts[0] == "sessions" && parts[1] != "":
		return &sessionEnd{sessionID: parts[1], cause: RevokedBySessionDeleted}, nil
	case ev.ResourceType != keycloak.ResourceUser || len(parts) < 2 || parts[0] != "users" || parts[1] == "":
		return nil, nil
	case ev.OperationType == "ACTION" && len(parts) == 3 && parts[2] == "logout":
		return &sessionEnd{subject: parts[1], cause: RevokedBySignOut}, nil
	case ev.OperationType == "DELETE" && len(parts) == 2:
		return &sessionEnd{subject: parts[1], cause: RevokedByUserDeleted}, nil
	case ev.OperationType == "UPDATE" && len(parts) == 2:
		return disabledUser(ctx, kc, parts[1], ev.Representation)
	}
	return nil, nil
}

// disabledUser reads a user update: the session end if it disabled the user.
func disabledUser(ctx context.Context, kc Directory, id, representation string) (*sessionEnd, error) {
	var rep struct {
		Enabled *bool `json:"enabled"`
	}
	if representation != "" && json.Unmarshal([]byte(representation), &rep) == nil {
		// Keycloak changes only what the body carries: no "enabled", no change.
		if rep.Enabled != nil && !*rep.Enabled {
			return &sessionEnd{subject: id, cause: RevokedByUserDisabled}, nil
		}
		return nil, nil
	}
	u, err := kc.User(ctx, id)
	switch {
	case errors.Is(err, keycloak.ErrUserNotFound):
		return &sessionEnd{subject: id, cause: RevokedByUserDeleted}, nil
	case err != nil:
		return nil, fmt.Errorf("orgsync: account of updated user %s: %w", id, err)
	case !u.Enabled:
		return &sessionEnd{subject: id, cause: RevokedByUserDisabled}, nil
	}
	return nil, nil
}

// resolveConcurrency bounds the Keycloak reads in flight while one page of
// events is resolved. A bulk change is a backlog of events that each need a
// read (Keycloak 26.5 names the member an ORGANIZATION_MEMBERSHIP CREATE adds
// only by username): read one after another, a thousand members added by a
// script held every later change behind them for seconds.
const resolveConcurrency = 8

// resolvedEvent is what Keycloak says about one admin event: the sessions it
// ends (nil: none) and the users whose cached claims it makes wrong.
type resolvedEvent struct {
	end   *sessionEnd
	users []string
	// refreshOrg: every member of this organization is to be invalidated,
	// page by page after the poll (refreshOrgs), not listed here.
	refreshOrg string
	err        error
}

// eventReads are the Keycloak reads of one page's events, made by up to
// resolveConcurrency goroutines in the events' order, so that the caller
// applies each event as soon as it and the ones before it are read. Once one
// event fails, the events after it are not asked about (the page stops at the
// failed one and they are handled again next time); the reads of the events
// before it are not cut short.
type eventReads struct {
	out  []resolvedEvent
	done []chan struct{}
	// failed is the lowest index that failed (len(page): none yet).
	failed atomic.Int64
	wg     sync.WaitGroup
}

// startResolving starts the reads of the events of page that skip does not
// leave out.
func (w *Watcher) startResolving(ctx context.Context, page []keycloak.AdminEvent, skip func(keycloak.AdminEvent) bool) *eventReads {
	r := &eventReads{out: make([]resolvedEvent, len(page)), done: make([]chan struct{}, len(page))}
	r.failed.Store(int64(len(page)))
	next := make(chan int, len(page))
	for i, ev := range page {
		r.done[i] = make(chan struct{})
		if skip(ev) {
			close(r.done[i])
		} else {
			next <- i
		}
	}
	close(next)
	for range min(resolveConcurrency, len(next)) {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			for i := range next {
				if int64(i) > r.failed.Load() {
					r.out[i].err = errAfterFailedEvent
				} else if r.out[i] = w.resolveEvent(ctx, page[i]); r.out[i].err != nil {
					lowerTo(&r.failed, int64(i))
				}
				close(r.done[i])
			}
		}()
	}
	return r
}

// wait returns the answer for the i-th event once it is read.
func (r *eventReads) wait(i int) resolvedEvent {
	<-r.done[i]
	return r.out[i]
}

// stop asks about no more events and waits for the reads in flight.
func (r *eventReads) stop() {
	lowerTo(&r.failed, -1)
	r.wg.Wait()
}

// lowerTo sets v to i unless it holds a lower value already.
func lowerTo(v *atomic.Int64, i int64) {
	for {
		cur := v.Load()
		if i >= cur || v.CompareAndSwap(cur, i) {
			return
		}
	}
}

// errAfterFailedEvent marks an event not asked about because an earlier one
// of its page failed, or because the page was left; nothing applies it.
var errAfterFailedEvent = errors.New("orgsync: an earlier event of the page failed")

func (w *Watcher) resolveEvent(ctx context.Context, ev keycloak.AdminEvent) resolvedEvent {
	var r resolvedEvent
	if w.deps.Revocations != nil {
		if r.end, r.err = endedSessions(ctx, w.deps.Keycloak, ev); r.err != nil {
			return r
		}
	}
	if org, ok := orgWideEvent(ev); ok {
		r.refreshOrg = org
		return r
	}
	r.users, r.err = affectedUsers(ctx, w.deps.Keycloak, ev)
	return r
}

// revoke records end, the sessions ev ends, in the fleet's revocations: one
// session by its id, or every session of a user issued at or before the event
// (a new login after it is not affected). An error fails the poll, and the
// event is handled again (revoking twice changes nothing).
func (w *Watcher) revoke(ctx context.Context, ev keycloak.AdminEvent, end *sessionEnd) error {
	if w.deps.Revocations == nil || end == nil {
		return nil
	}
	lifetime := w.deps.RevocationLifetime
	if lifetime <= 0 {
		lifetime = DefaultRevocationLifetime
	}
	r := cache.Revocation{Issuer: w.deps.Keycloak.Issuer(), SessionID: end.sessionID, Subject: end.subject,
		At: ev.Time, Until: time.Now().Add(lifetime)}
	if err := w.deps.Revocations.Revoke(ctx, r); err != nil {
		return fmt.Errorf("orgsync: revoking sessions (%s) of event %s: %w", end.cause, ev.ID, err)
	}
	metricRevocations.WithLabelValues(end.cause).Inc()
	logger().Info("sessions revoked from an admin event", "cause", end.cause, "subject", end.subject,
		"session", end.sessionID, "event_time", ev.Time.UTC().Format(time.RFC3339Nano))
	return nil
}
