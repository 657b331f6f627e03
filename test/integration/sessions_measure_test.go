//go:build integration

package integration

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/test/apisix"
	"github.com/apisix-identity-runner/apisix-identity-runner/test/kctest"
)

// sessionEndWay is one way a session ends in Keycloak, and the refusals
// that show it ended at the gateway.
type sessionEndWay struct {
	name   string
	client testClient
	// freshUser: the way disables or deletes the user, so each run gets its own.
	freshUser bool
	// subjectWide: the way revokes every session of the user up to now; the
	// next run's login waits for the next second (a token's iat is whole seconds).
	subjectWide bool
	end         func(t *testing.T, user *kctest.TestUser, sess *kctest.Session)
	reasons     []string // the 401 reasons that count as the session refused
}

// TestSessionEndLatency measures, for each way a session ends in Keycloak,
// the time from the start of the Keycloak call to the first request of the
// session that the runner refuses (p50 and p95 over SESSIONS_MEASURE_RUNS
// runs, default 20), with default settings (watcher interval 500 ms,
// orgsync's defaults), and holds the p95 under 1 s. It runs only with
// SESSIONS_MEASURE=1:
//
//	SESSIONS_MEASURE=1 go test -tags integration -count=1 -run TestSessionEndLatency -v ./test/integration/
//
// SESSIONS_MEASURE_OUT=file also writes the table there. A client with a
// back-channel logout URL stands for the realm's apisix client (Keycloak
// posts the logout token to a local server that hands it to the runner's
// back-channel logout route, as APISIX would); a client without one shows
// the admin-event watcher alone.
func TestSessionEndLatency(t *testing.T) {
	if os.Getenv("SESSIONS_MEASURE") != "1" {
		t.Skip("a measurement: SESSIONS_MEASURE=1 runs it")
	}
	runs := 20
	if v := os.Getenv("SESSIONS_MEASURE_RUNS"); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(t, err, "SESSIONS_MEASURE_RUNS")
		runs = n
	}
	e := baseEnv(t, kctest.Env(t).URL)
	delete(e, "KEYCLOAK_EVENTS_INTERVAL") // the default, 500 ms
	e["RUNNER_LOG_LEVEL"] = "warn"
	r := startRunner(t, e)
	bc := backchannelClient(t, r)
	plain := plainClient(t)

	signOut := func(t *testing.T, u *kctest.TestUser, _ *kctest.Session) { kctest.SignOutUser(t, u.ID) }
	deleteSession := func(t *testing.T, _ *kctest.TestUser, s *kctest.Session) { kctest.DeleteSession(t, s.SessionID(t)) }
	revoked := []string{"session_revoked"}
	ways := []sessionEndWay{
		{name: "logout at the end-session endpoint", client: bc.testClient, reasons: revoked,
			end: func(t *testing.T, _ *kctest.TestUser, s *kctest.Session) { kctest.LogoutSession(t, s) }},
		{name: "admin sign-out", client: bc.testClient, subjectWide: true, end: signOut, reasons: revoked},
		{name: "admin sign-out, watcher alone", client: plain, subjectWide: true, end: signOut, reasons: revoked},
		{name: "admin deletion of one session", client: bc.testClient, end: deleteSession, reasons: revoked},
		{name: "admin deletion of one session, watcher alone", client: plain, end: deleteSession, reasons: revoked},
		{name: "user disabled", client: plain, freshUser: true, reasons: []string{"account_disabled", "session_revoked"},
			end: func(t *testing.T, u *kctest.TestUser, _ *kctest.Session) { kctest.DisableUser(t, u.ID) }},
		{name: "user deleted", client: plain, freshUser: true, reasons: []string{"account_unknown", "session_revoked"},
			end: func(t *testing.T, u *kctest.TestUser, _ *kctest.Session) { kctest.DeleteUser(t, u.ID) }},
	}
	var table strings.Builder
	fmt.Fprintf(&table, "| way | runs | p50 | p95 | max | Keycloak call p50 | refused as |\n|---|---|---|---|---|---|---|\n")
	for _, way := range ways {
		t.Run(way.name, func(t *testing.T) {
			m := measureWay(t, r, way, runs)
			fmt.Fprintf(&table, "| %s | %d | %s | %s | %s | %s | %s |\n", way.name, len(m.took),
				ms(m.percentile(0.50)), ms(m.percentile(0.95)), ms(m.percentile(1)), ms(percentile(m.call, 0.50)),
				m.reasonsSeen())
			require.Len(t, m.took, runs, "every run refused within the deadline")
			assert.Less(t, m.percentile(0.95), time.Second, "p95 under 1 s")
		})
	}
	t.Logf("time from the Keycloak call to the first refused request (back-channel logouts received: %d, accepted: %d):\n%s",
		bc.received.Load(), bc.accepted.Load(), table.String())
	if out := os.Getenv("SESSIONS_MEASURE_OUT"); out != "" {
		require.NoError(t, os.WriteFile(out, []byte(table.String()), 0o644))
	}
}

// wayMeasure is what the runs of one way gave.
type wayMeasure struct {
	took, call []time.Duration
	reasons    map[string]int
}

func (m *wayMeasure) percentile(p float64) time.Duration { return percentile(m.took, p) }

func (m *wayMeasure) reasonsSeen() string {
	var out []string
	for r, n := range m.reasons {
		out = append(out, fmt.Sprintf("%s ×%d", r, n))
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

// percentile is the nearest-rank percentile of d (p in (0, 1]).
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[max(int(math.Ceil(p*float64(len(s))))-1, 0)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) }

// refusalDeadline is how long a run waits for the refusal before it counts
// as not refused.
const refusalDeadline = 10 * time.Second

// measureWay ends a fresh session runs times the way given and times each
// until the session's first refused request. Two runs in a row without a
// refusal end the way early: what refuses it is missing.
func measureWay(t *testing.T, r *runner, way sessionEndWay, runs int) *wayMeasure {
	t.Helper()
	route := newRoute(userinfoConfFor(t, way.client.id, ""), orgsyncConf(`{}`))
	m := &wayMeasure{reasons: map[string]int{}}
	var user *kctest.TestUser
	var lastEnd time.Time
	misses := 0
	for run := 0; run < runs && misses < 2; run++ {
		if user == nil || way.freshUser {
			user = kctest.CreateUser(t, "measure")
		}
		if way.subjectWide && !lastEnd.IsZero() {
			time.Sleep(time.Until(lastEnd.Truncate(time.Second).Add(1100 * time.Millisecond)))
		}
		sess := kctest.LoginClient(t, way.client.id, way.client.secret, user.Username, user.Password)
		res := r.do(t, route, headersOf(sess))
		require.Equal(t, http.StatusOK, res.Status, "served before the session ends: %s", res.Body)

		start := time.Now()
		way.end(t, user, sess)
		lastEnd = time.Now()
		m.call = append(m.call, lastEnd.Sub(start))
		for {
			res := r.do(t, route, headersOf(sess))
			if res.Status == http.StatusUnauthorized {
				reason := reasonOf(t, res)
				require.Contains(t, way.reasons, reason, "refused for the reason the way gives")
				m.took = append(m.took, time.Since(start))
				m.reasons[reason]++
				misses = 0
				break
			}
			require.Equal(t, http.StatusOK, res.Status, "served or refused: %s", res.Body)
			if time.Since(start) > refusalDeadline {
				t.Errorf("run %d: still served %s after the Keycloak call", run, refusalDeadline)
				misses++
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return m
}

// backchannel is a confidential client whose back-channel logout URL is a
// local server that hands each logout token to the runner's back-channel
// logout route, as APISIX hands it on from the route Keycloak posts to.
type backchannel struct {
	testClient
	received, accepted atomic.Int64
}

func backchannelClient(t *testing.T, r *runner) *backchannel {
	t.Helper()
	s := kctest.Env(t)
	b := &backchannel{testClient: testClient{id: fmt.Sprintf("bcl-%d", time.Now().UnixNano()), secret: "bcl-client-secret"}}
	route := newRoute(apisix.PluginConf{Name: "userinfo",
		Value: fmt.Sprintf(`{"backchannel_logout":true,"issuer":%q,"audience":%q}`, s.Issuer, b.id)})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b.received.Add(1)
		body, err := io.ReadAll(io.LimitReader(req.Body, 64<<10))
		if err != nil {
			http.Error(w, "body", http.StatusBadRequest)
			return
		}
		h := http.Header{"Content-Type": {req.Header.Get("Content-Type")}, "Content-Length": {strconv.Itoa(len(body))}}
		res, err := r.gw.Do(req.Context(), route, &apisix.Request{Method: req.Method, Path: "/backchannel-logout",
			Header: h, Body: body, SrcIP: "127.0.0.1"})
		if err != nil {
			http.Error(w, "runner", http.StatusBadGateway)
			return
		}
		if res.Status == http.StatusOK && !res.Upstream {
			b.accepted.Add(1)
		}
		for k, v := range res.ResponseHeader {
			w.Header()[k] = v
		}
		w.WriteHeader(res.Status)
		_, _ = w.Write(res.Body)
	}))
	t.Cleanup(srv.Close)
	kctest.CreateClient(t, map[string]any{"clientId": b.id, "publicClient": false, "secret": b.secret,
		"directAccessGrantsEnabled": true, "standardFlowEnabled": false,
		"attributes": map[string]string{"backchannel.logout.url": srv.URL + "/backchannel-logout",
			"backchannel.logout.session.required": "true"}})
	return b
}
