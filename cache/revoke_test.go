package cache

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/logtest"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/redistest"
)

const testIssuer = "https://sso.example.org/realms/demo"

func newTestRevocations(t testing.TB, c *Cache, o RevocationOptions) *Revocations {
	t.Helper()
	s, err := NewRevocations(c, o)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// fakeClock is a clock the test moves; safe for the store's goroutine.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}
func (c *fakeClock) Now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Add(d time.Duration) { c.ns.Add(int64(d)) }
func sessionRev(sid string, until time.Time) Revocation {
	return Revocation{Issuer: testIssuer, SessionID: sid, Subject: "alice", At: time.Now(), Until: until}
}

// fleet is n processes on one Redis: a cache and a revocation store each.
func fleet(t *testing.T, o Options, n int) []*Revocations {
	t.Helper()
	out := make([]*Revocations, n)
	for i := range out {
		out[i] = newTestRevocations(t, newTestCache(t, o), RevocationOptions{})
	}
	return out
}

// waitRevoked waits until s refuses the session and returns how long that took from start.
func waitRevoked(t *testing.T, s *Revocations, start time.Time, sid string) time.Duration {
	t.Helper()
	require.Eventually(t, func() bool { return s.Revoked(testIssuer, sid, "alice", time.Now()) },
		5*time.Second, time.Millisecond, "session %s revoked", sid)
	return time.Since(start)
}

// A session revoked on one runner is refused by every other within a second (pub/sub).
func TestRevocationReachesEveryProcess(t *testing.T) {
	srv := redistest.Start(t)
	rs := fleet(t, Options{RedisURL: srv.URL(), KeyPrefix: testPrefix(t)}, 3)

	var worst time.Duration
	for i := range 10 {
		sid := fmt.Sprintf("sid-%d", i)
		from := rs[i%3]
		start := time.Now()
		require.NoError(t, from.Revoke(ctx, sessionRev(sid, time.Now().Add(time.Hour))))
		assert.True(t, from.Revoked(testIssuer, sid, "alice", time.Now()), "the revoking process at once")
		for _, other := range rs {
			worst = max(worst, waitRevoked(t, other, start, sid))
		}
		assert.False(t, rs[(i+1)%3].Revoked(testIssuer, sid+"-other", "alice", time.Now()), "another session of alice")
	}
	t.Logf("slowest of 10 revocations to reach all 3 processes: %s", worst)
	assert.Less(t, worst, time.Second, "every process applies a revocation within a second")
}

// A process started after a revocation refuses the session as soon as NewRevocations returns.
func TestRevocationLoadedAtStart(t *testing.T) {
	srv := redistest.Start(t)
	o := Options{RedisURL: srv.URL(), KeyPrefix: testPrefix(t)}
	a := fleet(t, o, 1)[0]
	for i := range 2500 { // more than one SCAN batch
		require.NoError(t, a.Revoke(ctx, sessionRev(fmt.Sprintf("s%d", i), time.Now().Add(time.Hour))))
	}
	require.NoError(t, a.Revoke(ctx, Revocation{Issuer: testIssuer, Subject: "bob", At: time.Now(), Until: time.Now().Add(time.Hour)}))

	late := fleet(t, o, 1)[0]
	assert.Equal(t, 2501, late.Len())
	assert.True(t, late.Revoked(testIssuer, "s2499", "alice", time.Now()))
	assert.True(t, late.Revoked(testIssuer, "", "bob", time.Now().Add(-time.Minute)))
	assert.False(t, late.Revoked(testIssuer, "s2500", "alice", time.Now()))
}

// Revocations published while a process's subscription was down are loaded when it comes back.
func TestRevocationsLoadedAfterResubscription(t *testing.T) {
	srv := redistest.Start(t)
	o := Options{RedisURL: srv.URL(), KeyPrefix: testPrefix(t)}
	b := fleet(t, o, 1)[0]
	// A process whose messages do not reach b (another channel): what it stores, b can only load.
	quiet := o
	quiet.Channel = o.KeyPrefix + "elsewhere"
	a := fleet(t, quiet, 1)[0]

	require.NoError(t, a.Revoke(ctx, sessionRev("missed", time.Now().Add(time.Hour))))
	time.Sleep(200 * time.Millisecond) // a message, had there been one, would be there by now
	require.False(t, b.Revoked(testIssuer, "missed", "alice", time.Now()), "no message reached b")

	// Break every subscription: b resubscribes and loads.
	rc := rawClient(t, srv.URL())
	require.NoError(t, rc.ClientKillByFilter(ctx, "TYPE", "pubsub").Err())
	waitRevoked(t, b, time.Now(), "missed")
}

// Redis killed and restarted (empty): a revocation made meanwhile holds at once where it was
// made, and reaches the other process once Redis is back.
func TestRevocationsAcrossRedisRestart(t *testing.T) {
	srv := redistest.Start(t)
	o := Options{RedisURL: srv.URL(), KeyPrefix: testPrefix(t), OpTimeout: 100 * time.Millisecond}
	rs := fleet(t, o, 2)
	a, b := rs[0], rs[1]
	require.NoError(t, a.Revoke(ctx, sessionRev("before", time.Now().Add(time.Hour))))
	waitRevoked(t, b, time.Now(), "before")

	srv.Kill()
	err := a.Revoke(ctx, sessionRev("during", time.Now().Add(time.Hour)))
	require.ErrorIs(t, err, ErrNotShared)
	assert.True(t, a.Revoked(testIssuer, "during", "alice", time.Now()), "held where it was made")
	assert.False(t, b.Revoked(testIssuer, "during", "alice", time.Now()))

	srv.Start()
	start := time.Now()
	took := waitRevoked(t, b, start, "during")
	t.Logf("revocation made while Redis was down reached the other process %s after Redis came back", took)
	assert.True(t, b.Revoked(testIssuer, "before", "alice", time.Now()), "a restart of Redis lifts nothing held")
	assert.Zero(t, a.pendingLen())
	// A process started now loads what was sent again (Redis lost "before" with its data).
	c := fleet(t, o, 1)[0]
	assert.True(t, c.Revoked(testIssuer, "during", "alice", time.Now()))
}

// Redis down when the process starts: it starts empty, says so once, and loads when Redis is back.
func TestRevocationsRedisDownAtStart(t *testing.T) {
	srv := redistest.Start(t)
	o := Options{RedisURL: srv.URL(), KeyPrefix: testPrefix(t), OpTimeout: 100 * time.Millisecond}
	a := fleet(t, o, 1)[0]
	require.NoError(t, a.Revoke(ctx, sessionRev("stored", time.Now().Add(time.Hour))))

	logs := captureWarn(t)
	srv.Signal(syscall.SIGSTOP) // frozen: its data stays; the server's cleanup thaws it
	start := time.Now()
	b := fleet(t, o, 1)[0]
	assert.Less(t, time.Since(start), 2*time.Second, "start is bounded")
	assert.False(t, b.Revoked(testIssuer, "stored", "alice", time.Now()))
	srv.Signal(syscall.SIGCONT)
	waitRevoked(t, b, time.Now(), "stored")
	assert.Equal(t, 1, logs.Count("redis unavailable at start"), logs)
}

// A revocation ends at its Until: in every process, and in Redis.
func TestRevocationExpiresAtUntil(t *testing.T) {
	t.Run("in process", func(t *testing.T) {
		clock := newFakeClock()
		s, err := newRevocations(nil, RevocationOptions{}, clock.Now)
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		until := clock.Now().Add(10 * time.Minute)
		require.NoError(t, s.Revoke(ctx, sessionRev("x", until)))
		before := testutil.ToFloat64(revExpired)
		clock.Add(10*time.Minute - time.Millisecond)
		assert.True(t, s.Revoked(testIssuer, "x", "alice", clock.Now()), "until the last millisecond")
		clock.Add(time.Millisecond)
		assert.False(t, s.Revoked(testIssuer, "x", "alice", clock.Now()), "at Until")
		require.Eventually(t, func() bool { return s.Len() == 0 }, 3*time.Second, 10*time.Millisecond, "swept")
		assert.Equal(t, before+1, testutil.ToFloat64(revExpired))
		require.NoError(t, s.Revoke(ctx, sessionRev("y", clock.Now())), "already over: nothing to do")
		assert.Zero(t, s.Len())
	})
	t.Run("in redis", func(t *testing.T) {
		srv := redistest.Start(t)
		o := Options{RedisURL: srv.URL(), KeyPrefix: testPrefix(t)}
		rs := fleet(t, o, 2)
		require.NoError(t, rs[0].Revoke(ctx, sessionRev("short", time.Now().Add(400*time.Millisecond))))
		waitRevoked(t, rs[1], time.Now(), "short")
		rc := rawClient(t, srv.URL())
		keys, err := rc.Keys(ctx, o.KeyPrefix+"rev:*").Result()
		require.NoError(t, err)
		require.Len(t, keys, 1)
		pttl, err := rc.PTTL(ctx, keys[0]).Result()
		require.NoError(t, err)
		assert.LessOrEqual(t, pttl, 400*time.Millisecond, "Redis forgets it at Until")
		require.Eventually(t, func() bool {
			return !rs[0].Revoked(testIssuer, "short", "alice", time.Now()) && !rs[1].Revoked(testIssuer, "short", "alice", time.Now())
		}, 2*time.Second, 5*time.Millisecond)
		require.Eventually(t, func() bool { return rc.Exists(ctx, keys[0]).Val() == 0 }, 2*time.Second, 10*time.Millisecond)
		assert.Zero(t, fleet(t, o, 1)[0].Len(), "a later process loads nothing")
	})
}

// A subject-wide revocation refuses tokens issued at or before At, not later logins; a session
// revocation refuses that session only. Revocations of one subject merge to the latest At.
func TestSubjectWideRevocation(t *testing.T) {
	srv := redistest.Start(t)
	rs := fleet(t, Options{RedisURL: srv.URL(), KeyPrefix: testPrefix(t)}, 2)
	at := time.Now().Truncate(time.Second)
	until := at.Add(time.Hour)
	require.NoError(t, rs[0].Revoke(ctx, Revocation{Issuer: testIssuer, Subject: "alice", At: at, Until: until}))
	for _, s := range rs {
		require.Eventually(t, func() bool { return s.Revoked(testIssuer, "any", "alice", at) }, time.Second, time.Millisecond)
		assert.True(t, s.Revoked(testIssuer, "", "alice", at.Add(-time.Hour)), "issued before")
		assert.True(t, s.Revoked(testIssuer, "", "alice", time.Time{}), "no iat: refused")
		assert.False(t, s.Revoked(testIssuer, "new", "alice", at.Add(time.Second)), "a later login")
		assert.False(t, s.Revoked(testIssuer, "", "bob", at), "another user")
		assert.False(t, s.Revoked("https://sso.example.org/realms/other", "", "alice", at), "another realm")
	}
	// An older sign-out arriving later does not narrow the newer one.
	later := at.Add(time.Minute)
	require.NoError(t, rs[1].Revoke(ctx, Revocation{Issuer: testIssuer, Subject: "alice", At: later, Until: until}))
	require.NoError(t, rs[1].Revoke(ctx, Revocation{Issuer: testIssuer, Subject: "alice", At: at, Until: until}))
	for _, s := range rs {
		require.Eventually(t, func() bool { return s.Revoked(testIssuer, "", "alice", later) }, time.Second, time.Millisecond)
		assert.False(t, s.Revoked(testIssuer, "", "alice", later.Add(time.Second)))
	}
	assert.Equal(t, 1, fleet(t, Options{RedisURL: srv.URL(), KeyPrefix: rs[0].c.opts.KeyPrefix}, 1)[0].Len(),
		"one entry per subject in process, whatever Redis holds")
}

// The in-process copy is bounded in entries and bytes; at the bound the entries that expire
// soonest make room, the new revocation always gets in, and each eviction is counted.
func TestRevocationBound(t *testing.T) {
	clock := newFakeClock()
	s, err := newRevocations(nil, RevocationOptions{MaxEntries: 3}, clock.Now)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	now := clock.Now()
	for i, mins := range []int{30, 10, 20} {
		require.NoError(t, s.Revoke(ctx, sessionRev(fmt.Sprint("s", i), now.Add(time.Duration(mins)*time.Minute))))
	}
	before := testutil.ToFloat64(revEvictedMemory)
	require.NoError(t, s.Revoke(ctx, sessionRev("s3", now.Add(5*time.Minute))))
	assert.Equal(t, 3, s.Len())
	assert.False(t, s.Revoked(testIssuer, "s1", "alice", now), "the soonest to expire of those held went")
	for _, sid := range []string{"s0", "s2", "s3"} {
		assert.True(t, s.Revoked(testIssuer, sid, "alice", now), sid)
	}
	require.NoError(t, s.Revoke(ctx, sessionRev("s4", now.Add(time.Hour))))
	assert.False(t, s.Revoked(testIssuer, "s3", "alice", now))
	assert.Equal(t, before+2, testutil.ToFloat64(revEvictedMemory))

	// Bytes: room for two entries of this size.
	size := int64(len(testIssuer)+len("b0")) + revEntryOverhead
	sb, err := newRevocations(nil, RevocationOptions{MaxBytes: 2*size + 1}, clock.Now)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sb.Close() })
	for i := range 5 {
		require.NoError(t, sb.Revoke(ctx, sessionRev(fmt.Sprint("b", i), now.Add(time.Duration(10-i)*time.Minute))))
	}
	assert.Equal(t, 2, sb.Len())
	assert.LessOrEqual(t, sb.bytes, 2*size+1)

	// A flood cannot grow it past the bound.
	for i := range 10000 {
		require.NoError(t, s.Revoke(ctx, sessionRev(fmt.Sprint("f", i), now.Add(time.Hour))))
	}
	assert.Equal(t, 3, s.Len())
	assert.Equal(t, 3, len(s.byUntil), "heap entries")
}

// Nothing a Redis writer puts in Redis or on the channel without the fleet's secret plants a
// revocation, and changing a genuine one (to shorten it) does not lift it.
func TestForgedRevocationsIgnored(t *testing.T) {
	srv := redistest.Start(t)
	o := Options{RedisURL: srv.URL(), KeyPrefix: testPrefix(t)}
	a := fleet(t, o, 1)[0]
	rc := rawClient(t, srv.URL())
	ca := a.c

	forge := func(sid string) (string, []byte) {
		rec := revRecord{Kind: kindSession, Issuer: testIssuer, ID: sid, Until: time.Now().Add(time.Hour).UnixMilli()}
		return ca.revKey(rec.hash()), rec.encode()
	}
	other, err := New(ctx, &Options{RedisURL: srv.URL(), KeyPrefix: o.KeyPrefix, Channel: o.KeyPrefix + "x",
		ValueSecret: []byte("another secret, also 32 bytes ok")})
	require.NoError(t, err)
	t.Cleanup(func() { _ = other.Close() })

	k1, v1 := forge("unsealed")
	k2, v2 := forge("other-secret")
	k3, v3 := forge("moved")
	_, v4 := forge("cache-value")
	planted := map[string][]byte{
		k1:              v1,                                                                 // plain JSON
		k2:              other.seal(k2, Entry{Value: v2, FetchedAt: fetchTime()}),           // sealed with another secret
		k3:              ca.seal(k2, Entry{Value: v3, FetchedAt: fetchTime()}),              // genuine seal, for another key
		ca.revKey("v4"): ca.seal(ca.revKey("v4"), Entry{Value: v4, FetchedAt: fetchTime()}), // sealed, key not its own
	}
	// A genuine cache value copied under a revocation key.
	require.NoError(t, ca.Set(ctx, "user1", v4))
	genuine, err := rc.Get(ctx, ca.valueKey("user1")).Bytes()
	require.NoError(t, err)
	planted[ca.revKey("copied")] = genuine

	rejected := testutil.ToFloat64(rejectedMAC) + testutil.ToFloat64(rejectedFormat)
	for k, v := range planted {
		require.NoError(t, rc.Set(ctx, k, v, time.Hour).Err())
		msg, err := json.Marshal(invalidation{From: "intruder", Rev: &revMessage{Key: k, Value: v}})
		require.NoError(t, err)
		require.NoError(t, rc.Publish(ctx, ca.opts.Channel, msg).Err())
	}
	// A genuine revocation published by a member, marking where the forged messages end.
	require.NoError(t, a.Revoke(ctx, sessionRev("marker", time.Now().Add(time.Hour))))
	b := fleet(t, o, 1)[0]
	require.True(t, b.Revoked(testIssuer, "marker", "alice", time.Now()))
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(rejectedMAC)+testutil.ToFloat64(rejectedFormat) >= rejected+2*float64(len(planted))
	}, 2*time.Second, 5*time.Millisecond, "every forged message and value refused")
	for _, s := range []*Revocations{a, b} {
		for _, sid := range []string{"unsealed", "other-secret", "moved", "cache-value", "copied"} {
			assert.False(t, s.Revoked(testIssuer, sid, "alice", time.Now()), sid)
		}
		assert.Equal(t, 1, s.Len())
	}

	// Lifting: a deletion in Redis lifts nothing a process holds, even when it loads again
	// (the routine reload after a resubscription is logged at info).
	logs := logtest.Capture(t, slog.LevelInfo)
	keys, err := rc.Keys(ctx, o.KeyPrefix+"rev:*").Result()
	require.NoError(t, err)
	for _, k := range keys {
		require.NoError(t, rc.Del(ctx, k).Err())
	}
	require.NoError(t, rc.ClientKillByFilter(ctx, "TYPE", "pubsub").Err()) // both reload
	require.Eventually(t, func() bool { return logs.Count("revocations loaded from redis after") >= 2 },
		5*time.Second, 10*time.Millisecond, "both loaded again")
	assert.True(t, a.Revoked(testIssuer, "marker", "alice", time.Now()), "a deletion in Redis lifts nothing a process holds")
	assert.True(t, b.Revoked(testIssuer, "marker", "alice", time.Now()))
}

// Without Redis the store works alone, and without a cache at all.
func TestRevocationsWithoutRedis(t *testing.T) {
	for name, c := range map[string]*Cache{"cache without redis": newTestCache(t, Options{}), "no cache": nil} {
		t.Run(name, func(t *testing.T) {
			s := newTestRevocations(t, c, RevocationOptions{})
			require.NoError(t, s.Revoke(ctx, sessionRev("s", time.Now().Add(time.Hour))))
			assert.True(t, s.Revoked(testIssuer, "s", "alice", time.Now()))
			assert.False(t, s.Revoked(testIssuer, "t", "alice", time.Now()))
			require.NoError(t, s.Close())
			require.NoError(t, s.Close(), "twice")
		})
	}
}

// A revocation that says nothing, or carries oversized identifiers, is refused and costs nothing.
func TestInvalidRevocations(t *testing.T) {
	s := newTestRevocations(t, nil, RevocationOptions{})
	until := time.Now().Add(time.Hour)
	long := string(make([]byte, maxRevField+1))
	for name, r := range map[string]Revocation{
		"no issuer":               {SessionID: "s", Until: until},
		"no Until":                {Issuer: testIssuer, SessionID: "s"},
		"neither sid nor sub":     {Issuer: testIssuer, Until: until},
		"subject-wide without At": {Issuer: testIssuer, Subject: "alice", Until: until},
		"oversized session id":    {Issuer: testIssuer, SessionID: long, Until: until},
		"oversized subject":       {Issuer: testIssuer, Subject: long, At: time.Now(), Until: until},
		"oversized issuer":        {Issuer: long, SessionID: "s", Until: until},
	} {
		assert.Error(t, s.Revoke(ctx, r), name)
	}
	assert.Zero(t, s.Len())
}

// One store per cache: a second would miss the messages the first takes.
func TestOneRevocationStorePerCache(t *testing.T) {
	srv := redistest.Start(t)
	c := newTestCache(t, Options{RedisURL: srv.URL(), KeyPrefix: testPrefix(t)})
	s := newTestRevocations(t, c, RevocationOptions{})
	_, err := NewRevocations(c, RevocationOptions{})
	require.Error(t, err)
	require.NoError(t, s.Close())
	newTestRevocations(t, c, RevocationOptions{})
}

// Revoked allocates nothing, hit or miss, empty or full.
func TestRevokedAllocatesNothing(t *testing.T) {
	s := newTestRevocations(t, nil, RevocationOptions{})
	iat := time.Now()
	assert.Zero(t, testing.AllocsPerRun(100, func() { s.Revoked(testIssuer, "sid", "alice", iat) }), "empty")
	require.NoError(t, s.Revoke(ctx, sessionRev("sid", time.Now().Add(time.Hour))))
	require.NoError(t, s.Revoke(ctx, Revocation{Issuer: testIssuer, Subject: "bob", At: iat, Until: iat.Add(time.Hour)}))
	assert.Zero(t, testing.AllocsPerRun(100, func() { s.Revoked(testIssuer, "sid", "alice", iat) }), "hit")
	assert.Zero(t, testing.AllocsPerRun(100, func() { s.Revoked(testIssuer, "other", "bob", iat) }), "subject hit")
	assert.Zero(t, testing.AllocsPerRun(100, func() { s.Revoked(testIssuer, "other", "carol", iat) }), "miss")
}

// revEntryOverhead covers what an entry costs beside its identifiers.
func TestRevocationBytesAccounting(t *testing.T) {
	const n = 50000
	s := newTestRevocations(t, nil, RevocationOptions{})
	sids := make([]string, n)
	for i := range sids {
		sids[i] = fmt.Sprintf("%08d-0000-4000-8000-000000000000", i) // a UUID's length
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	until := time.Now().Add(time.Hour)
	for _, sid := range sids {
		require.NoError(t, s.Revoke(ctx, sessionRev(sid, until)))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	// The sids were allocated before: they are the caller's, shared with the store.
	measured := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n
	t.Logf("%d bytes per entry beside its identifiers (accounted: %d)", measured, revEntryOverhead)
	assert.LessOrEqual(t, measured, int64(revEntryOverhead))
	assert.Equal(t, int64(n)*(int64(len(testIssuer)+len(sids[0]))+revEntryOverhead), s.bytes)
	runtime.KeepAlive(sids)
}

// A load into a full copy keeps the revocations that expire last, whatever order Redis gives.
func TestRevocationLoadIntoFullCopy(t *testing.T) {
	srv := redistest.Start(t)
	o := Options{RedisURL: srv.URL(), KeyPrefix: testPrefix(t)}
	a := fleet(t, o, 1)[0]
	now := time.Now()
	for i := range 20 {
		require.NoError(t, a.Revoke(ctx, sessionRev(fmt.Sprint("s", i), now.Add(time.Duration(10+i)*time.Minute))))
	}
	b := newTestRevocations(t, newTestCache(t, o), RevocationOptions{MaxEntries: 5})
	assert.Equal(t, 5, b.Len())
	for i := range 20 {
		assert.Equal(t, i >= 15, b.Revoked(testIssuer, fmt.Sprint("s", i), "alice", now), "s%d", i)
	}
}

// Whatever Redis or the channel hands over, decoding neither panics nor reads past the value,
// and a record reads back as written.
func FuzzDecodeRecord(f *testing.F) {
	for _, r := range []revRecord{
		{Kind: kindSession, Issuer: testIssuer, ID: "5f0c1f9e-0000-4000-8000-000000000000", Until: 1},
		{Kind: kindSubject, Issuer: testIssuer, ID: "alice", At: 1, Until: 2},
	} {
		f.Add(r.encode())
	}
	f.Add([]byte{revFormat, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, ok := decodeRecord(b)
		if ok {
			assert.Equal(t, b, r.encode())
		}
	})
}

// Revoke returns only once every other process holds the revocation: the back-channel route
// answers the logout token after it, and from that moment no runner of the fleet may serve the
// session (issue 16: "0 requests served after any runner answered"). The peers here are slow to
// apply a message (100 ms); without the wait for their acknowledgements they still serve the
// session after Revoke returned.
func TestRevokeReturnsOnceEveryPeerHoldsIt(t *testing.T) {
	srv := redistest.Start(t)
	rs := fleet(t, Options{RedisURL: srv.URL(), KeyPrefix: testPrefix(t)}, 3)
	slow := func() { time.Sleep(100 * time.Millisecond) }
	for _, r := range rs {
		r.receiveHook.Store(&slow)
	}
	for i := range 5 {
		sid := fmt.Sprintf("acked-%d", i)
		start := time.Now()
		require.NoError(t, rs[i%3].Revoke(AwaitPeers(ctx), sessionRev(sid, time.Now().Add(time.Hour))))
		took := time.Since(start)
		for j, other := range rs {
			assert.True(t, other.Revoked(testIssuer, sid, "alice", time.Now()), "process %d refuses once Revoke returned", j)
		}
		assert.Less(t, took, revAckTimeout, "the peers' acknowledgements ended the wait, not the timeout")
	}
}

// A subscriber that never acknowledges (a runner of an older version) delays Revoke by
// revAckTimeout at most; the revocation is stored and published all the same.
func TestRevokeWaitsForASilentPeerBounded(t *testing.T) {
	srv := redistest.Start(t)
	o := Options{RedisURL: srv.URL(), KeyPrefix: testPrefix(t)}
	rs := fleet(t, o, 2)
	silent := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = silent.Close() })
	ps := silent.Subscribe(ctx, o.KeyPrefix+"invalidate")
	t.Cleanup(func() { _ = ps.Close() })
	_, err := ps.Receive(ctx)
	require.NoError(t, err)
	start := time.Now()
	require.NoError(t, rs[0].Revoke(AwaitPeers(ctx), sessionRev("silent", time.Now().Add(time.Hour))))
	took := time.Since(start)
	assert.True(t, rs[1].Revoked(testIssuer, "silent", "alice", time.Now()))
	assert.GreaterOrEqual(t, took, revAckTimeout-10*time.Millisecond, "waited for the silent subscriber")
	assert.Less(t, took, revAckTimeout+time.Second)

	// Without AwaitPeers (the watcher's revocations) nothing waits for it.
	start = time.Now()
	require.NoError(t, rs[0].Revoke(ctx, sessionRev("unawaited", time.Now().Add(time.Hour))))
	assert.Less(t, time.Since(start), revAckTimeout/2)
}
