package cache

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

const (
	namespace = "apisix_identity"
	subsystem = "cache"
)

var (
	hitsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: subsystem, Name: "hits_total",
		Help: "Fresh values served from a cache tier, by tier (local or redis).",
	}, []string{"tier"})
	missesTotal = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: subsystem, Name: "misses_total",
		Help: "Gets that found no usable value in any tier and had to load synchronously.",
	})
	loadsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: subsystem, Name: "loads_total",
		Help: "Loader calls made by this process, by result (ok or error).",
	}, []string{"result"})
	staleTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: subsystem, Name: "stale_served_total",
		Help: "Values served past their fresh age, by reason (refreshing or load_error).",
	}, []string{"reason"})
	redisErrorsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: subsystem, Name: "redis_errors_total",
		Help: "Redis commands that failed, by kind: timeout (no answer within the op timeout) or connection (refused, reset, closed, login refused).",
	}, []string{"kind"})
	// redisUp is registered by the first cache built with a REDIS_URL (exportRedisUp): a runner
	// without Redis, the in-process mode, has no Redis to be down, and a 0 there would page
	// whoever alerts on it.
	redisUp = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: subsystem, Name: "redis_up",
		Help: "1 while Redis answers, 0 while the cache runs without it. Exported only by a runner with REDIS_URL.",
	})
	invalidationsTotal = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: subsystem, Name: "invalidations_received_total",
		Help: "Invalidation messages received from other processes over pub/sub.",
	})
	flushesTotal = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: subsystem, Name: "local_flushes_total",
		Help: "Flushes of the in-process tier after the invalidation subscription was (re)established.",
	})
	fillRecheckTotal = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: subsystem, Name: "fill_rechecks_total",
		Help: "Fills that took the lock and found a value another process had just stored, so did not load.",
	})
	lockWaitsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: subsystem, Name: "fill_waits_total",
		Help: "Waits for another process's fill, by outcome: filled, released (the holder let go without a value; the lock is taken again) or timeout (this process loads).",
	}, []string{"outcome"})
	rejectedValues = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: subsystem, Name: "redis_values_rejected_total",
		Help: "Reads of a Redis value refused (the value is then a miss), by reason: mac (forged, altered or moved from another key), format (not the current envelope) or future (dated beyond the clock-skew allowance).",
	}, []string{"reason"})

	// Resolved children, so the hot path does no label lookup.
	hitsLocal       = hitsTotal.WithLabelValues("local")
	hitsRedis       = hitsTotal.WithLabelValues("redis")
	loadsOK         = loadsTotal.WithLabelValues("ok")
	loadsErr        = loadsTotal.WithLabelValues("error")
	staleRefreshing = staleTotal.WithLabelValues("refreshing")
	staleLoadErr    = staleTotal.WithLabelValues("load_error")
	waitFilled      = lockWaitsTotal.WithLabelValues("filled")
	waitTimeout     = lockWaitsTotal.WithLabelValues("timeout")
	waitReleased    = lockWaitsTotal.WithLabelValues("released")
	redisTimeouts   = redisErrorsTotal.WithLabelValues("timeout")
	redisConnErrors = redisErrorsTotal.WithLabelValues("connection")
	rejectedFormat  = rejectedValues.WithLabelValues(rejectFormat)
	rejectedMAC     = rejectedValues.WithLabelValues(rejectMAC)
	rejectedFuture  = rejectedValues.WithLabelValues(rejectFuture)
)

var registerRedisUp sync.Once

// exportRedisUp adds redis_up to the default registry, once per process.
func exportRedisUp() {
	registerRedisUp.Do(func() { prometheus.MustRegister(redisUp) })
}

var (
	revStored = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: subsystem, Name: "revocations_stored_total",
		Help: "Revocations recorded by this process (Revoke), by result: shared (stored in Redis and published), local (no Redis configured: the process is the fleet) or pending (Redis did not take it; held here and sent again when Redis is back).",
	}, []string{"result"})
	revApplied = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: subsystem, Name: "revocations_applied_total",
		Help: "Revocations of other processes applied here, by source: message (pub/sub) or load (read from Redis at start or after a resubscription).",
	}, []string{"source"})
	revExpired = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: subsystem, Name: "revocations_expired_total",
		Help: "Revocations dropped from this process because their Until passed.",
	})
	revEvicted = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: subsystem, Name: "revocations_evicted_total",
		Help: "Revocations dropped before their Until, by where: memory (the in-process copy was full; the soonest-expiring went) or pending (too many waiting for Redis; the oldest went, it still holds in this process).",
	}, []string{"where"})
	revAckTimeouts = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: subsystem, Name: "revocations_ack_timeouts_total",
		Help: "Revocations published here whose subscribers did not all say they hold it within 500 ms (a slow or older peer): the revocation was answered before every process was known to refuse the session.",
	})
	revEntries = promauto.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: subsystem, Name: "revocations_entries",
		Help: "Revocations held in this process.",
	})

	revStoredShared   = revStored.WithLabelValues("shared")
	revStoredLocal    = revStored.WithLabelValues("local")
	revStoredPending  = revStored.WithLabelValues("pending")
	revAppliedMessage = revApplied.WithLabelValues("message")
	revAppliedLoad    = revApplied.WithLabelValues("load")
	revEvictedMemory  = revEvicted.WithLabelValues("memory")
	revEvictedPending = revEvicted.WithLabelValues("pending")
)
