package orgsync

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/cache"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/logtest"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/redistest"
)

// warnings counts the lines logged at warn that contain msg.
func warnings(logs *logtest.Buffer, msg string) int {
	n := 0
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, msg) {
			n++
		}
	}
	return n
}

// A standing "admin event poll failing" ends, at warn, when this runner stops polling: here it
// stops (SIGTERM's hand-over releases the lease). Before, the line stood with no end.
func TestWatcherStopEndsStandingFailure(t *testing.T) {
	h := newHarness(t)
	logs := logtest.Capture(t, slog.LevelWarn)
	h.dir.setFail(errKeycloakDown)
	w := StartWatcher(&h.plugin.deps, 20*time.Millisecond)
	require.Eventually(t, func() bool { return warnings(logs, "admin event poll failing") == 1 },
		3*time.Second, 10*time.Millisecond, "the failure is reported")
	w.Stop()
	assert.Equal(t, 1, warnings(logs, "admin event watcher stopped; its failing poll stops here"), logs.String())
	assert.Equal(t, 1, warnings(logs, "admin event poll failing"), "reported once:\n%s", logs.String())
}

// The same when the lease is lost while the poll fails (its key gone from Redis, a restart or a
// failover, and another runner took it), and the lost lease ends too when the watcher stops.
func TestWatcherLostLeaseEndsStandingFailure(t *testing.T) {
	srv := redistest.Start(t)
	prefix := fmt.Sprintf("test:%s:%d:", t.Name(), time.Now().UnixNano())
	h := newRedisHarness(t, srv.URL(), prefix)
	o, err := redis.ParseURL(srv.URL())
	require.NoError(t, err)
	rdb := redis.NewClient(o)
	t.Cleanup(func() { _ = rdb.Close() })
	logs := logtest.Capture(t, slog.LevelWarn)
	const leaseFor = 150 * time.Millisecond
	var stall atomic.Bool
	stolen := make(chan *cache.Lease, 1)
	h.dir.eventsFail = func(int) error {
		if stall.CompareAndSwap(true, false) {
			if rdb.Del(t.Context(), prefix+"lease:"+watcherLease).Err() == nil {
				if l, ok, err := h.store.AcquireLease(t.Context(), watcherLease, time.Minute); err == nil && ok {
					stolen <- l
				}
			}
		}
		return errKeycloakDown
	}
	w := &Watcher{deps: &h.plugin.deps, interval: 20 * time.Millisecond, leaseFor: leaseFor,
		stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	require.Eventually(t, func() bool { return warnings(logs, "admin event poll failing") == 1 },
		3*time.Second, 10*time.Millisecond, "the failure is reported")
	stall.Store(true)
	var other *cache.Lease
	select {
	case other = <-stolen:
	case <-time.After(3 * time.Second):
		require.FailNow(t, "the lease was never taken over")
	}
	defer func() { _ = other.Release(t.Context()) }()
	require.Eventually(t, func() bool {
		return warnings(logs, "admin event watcher lease lost; its failing poll stops here") == 1
	}, 3*time.Second, 10*time.Millisecond, "the end of the failure is reported with the lost lease:\n%s", logs.String())
	w.Stop()
	started := warnings(logs, "admin event poll failing") + warnings(logs, "admin event watcher lease lost")
	ended := warnings(logs, "admin event poll recovered") + warnings(logs, "its failing poll stops here") +
		warnings(logs, "admin event watcher lease taken again") + warnings(logs, "admin event watcher lease held by another runner") +
		warnings(logs, "admin event watcher stopped; the lease it lost")
	assert.Equal(t, started, ended, "each standing warning has its end:\n%s", logs.String())
}

// Every poll result is exported from the start, ok included, before any poll succeeded (checked
// in a process of its own: other tests poll).
func TestWatcherPollResultsExportedAtZero(t *testing.T) {
	if os.Getenv("ORGSYNC_TEST_POLLS_CHILD") == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestWatcherPollResultsExportedAtZero$", "-test.count=1")
		cmd.Env = append(os.Environ(), "ORGSYNC_TEST_POLLS_CHILD=1")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		return
	}
	families, err := prometheus.DefaultGatherer.Gather()
	require.NoError(t, err)
	results := map[string]bool{}
	for _, f := range families {
		if f.GetName() != "apisix_identity_orgsync_event_watcher_polls_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				results[l.GetValue()] = true
			}
		}
	}
	assert.Equal(t, map[string]bool{"ok": true, "error": true, "not_leader": true}, results)
}
