package orgsync

import (
	"cmp"
	"context"
	"errors"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/cache"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/assertion"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/emit"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/identity"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/runnertest"
	"github.com/apisix-identity-runner/apisix-identity-runner/keycloak"
)

// fakeDirectory stands for Keycloak's admin API: users, their memberships,
// and injected failures, with every call counted.
type fakeDirectory struct {
	mu       sync.Mutex
	realm    string
	users    map[string]*keycloak.User
	orgs     map[string][]keycloak.Organization
	members  map[string][]string
	events   []keycloak.AdminEvent
	fail     error
	calls    atomic.Int64
	orgCalls atomic.Int64

	// queries are the AdminEvents calls' queries, in order; eventsFail, when
	// set, fails the call it returns an error for (n counts from 1).
	// orgGroupsErr fails OrganizationMemberGroups; onOrgGroups, when set,
	// runs first (a membership that ends mid-load).
	orgGroupsErr error
	// memberGroups are the groups a member is in, in every organization.
	memberGroups []string
	onOrgGroups  func()
	// noOrgGroups: Keycloak before 26.6; orgGroupsProbeErr: it cannot tell.
	// probes counts the watcher's questions.
	noOrgGroups       bool
	orgGroupsProbeErr error
	probes            int

	queries    []keycloak.AdminEventQuery
	eventsFail func(n int) error
	// onUsername, when set, runs first in UserIDByUsername (outside the
	// lock): a slow or failing search for one user.
	onUsername func(ctx context.Context, name string) error
	// onMembers, when set, runs before each page of OrganizationMemberPage
	// (outside the lock): a large organization, slow to list.
	onMembers func(ctx context.Context, orgID string) error
}

func newFakeDirectory(realm string) *fakeDirectory {
	return &fakeDirectory{realm: realm, users: map[string]*keycloak.User{}, orgs: map[string][]keycloak.Organization{},
		members: map[string][]string{}}
}

func (d *fakeDirectory) addUser(id string, enabled bool, orgs ...keycloak.Organization) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.users[id] = &keycloak.User{ID: id, Username: id, Enabled: enabled}
	d.orgs[id] = orgs
	for _, o := range orgs {
		d.members[o.ID] = append(d.members[o.ID], id)
	}
}

func (d *fakeDirectory) setFail(err error) {
	d.mu.Lock()
	d.fail = err
	d.mu.Unlock()
}

func (d *fakeDirectory) begin() error {
	d.calls.Add(1)
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.fail
}

func (d *fakeDirectory) Realm() string { return d.realm }

func (d *fakeDirectory) Issuer() string { return "https://sso.example.org/realms/" + d.realm }

func (d *fakeDirectory) User(_ context.Context, id string) (*keycloak.User, error) {
	if err := d.begin(); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	u, ok := d.users[id]
	if !ok {
		return nil, keycloak.ErrUserNotFound
	}
	copied := *u
	return &copied, nil
}

func (d *fakeDirectory) UserOrganizations(_ context.Context, id string) ([]keycloak.Organization, error) {
	d.orgCalls.Add(1)
	if err := d.begin(); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.users[id]; !ok {
		return nil, keycloak.ErrUserNotFound
	}
	return append([]keycloak.Organization(nil), d.orgs[id]...), nil
}

func (d *fakeDirectory) UserGroups(context.Context, string) ([]string, error) {
	return []string{"/staff"}, d.begin()
}

func (d *fakeDirectory) UserRealmRoles(context.Context, string) ([]string, error) {
	return []string{"course-admin"}, d.begin()
}

func (d *fakeDirectory) UserClientRoles(context.Context, string) (map[string][]string, error) {
	return map[string][]string{"account": {"view-profile"}}, d.begin()
}

// OrganizationMemberGroups answers orgGroupsErr when set (a Keycloak before
// 26.6 answers every such call with a bare 404), else no groups.
func (d *fakeDirectory) OrganizationMemberGroups(context.Context, string, string) ([]string, error) {
	if d.onOrgGroups != nil {
		d.onOrgGroups()
	}
	if err := d.begin(); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.orgGroupsErr != nil {
		return nil, d.orgGroupsErr
	}
	return append([]string{}, d.memberGroups...), nil
}

func (d *fakeDirectory) OrganizationGroupsSupported(context.Context) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.probes++
	return !d.noOrgGroups && d.orgGroupsProbeErr == nil, d.orgGroupsProbeErr
}

func (d *fakeDirectory) UserIDByUsername(ctx context.Context, name string) (string, error) {
	if err := d.begin(); err != nil {
		return "", err
	}
	if d.onUsername != nil {
		if err := d.onUsername(ctx, name); err != nil {
			return "", err
		}
	}
	return name, nil
}

// OrganizationMemberIDs lists the members page by page, as the client does.
func (d *fakeDirectory) OrganizationMemberIDs(ctx context.Context, orgID string) ([]string, error) {
	ids := []string{}
	for first := 0; ; first += fakePageSize {
		page, more, err := d.OrganizationMemberPage(ctx, orgID, first)
		if err != nil {
			return nil, err
		}
		ids = append(ids, page...)
		if !more {
			return ids, nil
		}
	}
}

// OrganizationMemberPage answers like Keycloak, in pages of fakePageSize;
// onMembers runs once per page.
func (d *fakeDirectory) OrganizationMemberPage(ctx context.Context, orgID string, first int) ([]string, bool, error) {
	if err := d.begin(); err != nil {
		return nil, false, err
	}
	if d.onMembers != nil {
		if err := d.onMembers(ctx, orgID); err != nil {
			return nil, false, err
		}
	}
	d.mu.Lock()
	all := d.members[orgID]
	page := slices.Clone(all[min(first, len(all)):])
	d.mu.Unlock()
	page = page[:min(fakePageSize, len(page))]
	return page, len(page) == fakePageSize, nil
}

// fakePageSize is Keycloak's page of organization members as the client asks for it.
const fakePageSize = 100

// AdminEvents answers like Keycloak: events at or after From's millisecond,
// ordered by time (events of one millisecond in the order they were added),
// then First skipped and Max (default 100) kept.
func (d *fakeDirectory) AdminEvents(ctx context.Context, q keycloak.AdminEventQuery) ([]keycloak.AdminEvent, error) {
	if err := d.begin(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.queries = append(d.queries, q)
	if d.eventsFail != nil {
		if err := d.eventsFail(len(d.queries)); err != nil {
			return nil, err
		}
	}
	var out []keycloak.AdminEvent
	for _, ev := range d.events {
		if !q.From.IsZero() && ev.Time.UnixMilli() < q.From.UnixMilli() {
			continue
		}
		if len(q.ResourceTypes) > 0 && !slices.Contains(q.ResourceTypes, ev.ResourceType) {
			continue
		}
		out = append(out, ev)
	}
	slices.SortStableFunc(out, func(a, b keycloak.AdminEvent) int {
		if q.Ascending {
			return cmp.Compare(a.Time.UnixMilli(), b.Time.UnixMilli())
		}
		return cmp.Compare(b.Time.UnixMilli(), a.Time.UnixMilli())
	})
	limit := q.Max
	if limit == 0 {
		limit = 100
	}
	out = out[min(q.First, len(out)):]
	return out[:min(limit, len(out))], nil
}

// adminEventQueries are the queries AdminEvents was called with so far.
func (d *fakeDirectory) adminEventQueries() []keycloak.AdminEventQuery {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.queries)
}

var errKeycloakDown = errors.New("keycloak: connection refused")

// harness is orgsync built as main builds it, on the in-process cache and a
// fake directory.
type harness struct {
	t       *testing.T
	plugin  *Plugin
	store   *cache.Cache
	dir     *fakeDirectory
	emitter *emit.Emitter
	// emitRoute is the emit settings userinfo's route hands on: the
	// organizations header and an assertion.
	emitRoute *emit.Route
}

// testKeys sign the harness's assertions.
var testKeys = func() *assertion.KeyRing {
	keys, err := assertion.Generate()
	if err != nil {
		panic(err)
	}
	return keys
}()

const testRealm = "olapps"
const testIssuer = "https://sso.example.org/realms/" + testRealm

func newHarness(t *testing.T) *harness {
	t.Helper()
	store, err := cache.New(t.Context(), &cache.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	dir := newFakeDirectory(testRealm)
	em := emit.New(emit.Options{Keys: testKeys})
	route := em.Route([]emit.ClaimHeader{{Header: identity.HeaderUserOrgs, Claim: identity.ClaimOrganization}},
		&emit.Assertion{Header: identity.HeaderAssertion, Audience: "app", Issuer: "gw", TTL: time.Minute})
	return &harness{t: t, plugin: New(Deps{Cache: store, Keycloak: dir, Emitter: em}), store: store, dir: dir, emitter: em,
		emitRoute: route}
}

func (h *harness) route(confJSON string) any {
	h.t.Helper()
	v, err := h.plugin.ParseConf([]byte(confJSON))
	require.NoError(h.t, err)
	require.NoError(h.t, v.(*Conf).Err())
	return v
}

// logins name the test logins; far from the emitter's own names.
var logins atomic.Uint64

// login is a verified identity as userinfo leaves it, shared by every
// request of the login, with the organizations of orgs as a list claim.
func login(sub string, orgs ...string) identity.Identity {
	claims := identity.Claims{"sub": mustJSON(sub)}
	if len(orgs) > 0 {
		claims[identity.ClaimOrganization] = mustJSON(orgs)
	}
	return loginWith(claims)
}

// loginWith is the verified identity of claims.
func loginWith(claims identity.Claims) identity.Identity {
	return loginOf(claims, testIssuer, true)
}

// loginAt is a verified identity of sub whose token another issuer signed.
func loginAt(issuer, sub string) identity.Identity {
	return loginOf(identity.Claims{"sub": mustJSON(sub)}, issuer, true)
}

func loginOf(claims identity.Claims, issuer string, verified bool) identity.Identity {
	id, err := identity.New(identity.Login(1<<40+logins.Add(1)), claims, issuer, verified)
	if err != nil {
		panic(err)
	}
	return id
}

var requestIDs atomic.Uint32

// do runs one request of id through conf.
func (h *harness) do(conf any, id identity.Identity, headers map[string]string) (*httptest.ResponseRecorder, *runnertest.Request) {
	r := runnertest.NewRequest(requestIDs.Add(1), 1, headers)
	require.NoError(h.t, emit.Attach(r, emit.Proof{Identity: id, Route: h.emitRoute}))
	return h.serve(conf, r), r
}

// doAnonymous runs one request without userinfo before orgsync.
func (h *harness) doAnonymous(conf any, headers map[string]string) (*httptest.ResponseRecorder, *runnertest.Request) {
	r := runnertest.NewRequest(requestIDs.Add(1), 1, headers)
	return h.serve(conf, r), r
}

func (h *harness) serve(conf any, r *runnertest.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.plugin.RequestFilter(conf, w, r)
	return w
}
