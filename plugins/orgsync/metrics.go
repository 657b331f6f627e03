package orgsync

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	metricRequests = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: "apisix_identity", Subsystem: Name, Name: "requests_total",
		Help: "Requests seen by orgsync, by outcome: the organizations' source (keycloak, cache, stale, token), or anonymous, refused, denied, forbidden (an access rule), misconfigured, invalidate.",
	}, []string{"outcome"})
	metricStaleServes = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: "apisix_identity", Subsystem: Name, Name: "stale_serves_total",
		Help: "Requests served a cached list past stale_ttl because Keycloak failed.",
	})
	metricKeycloakErrors = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: "apisix_identity", Subsystem: Name, Name: "keycloak_unavailable_total",
		Help: "Requests for which Keycloak could not be asked and nothing was cached.",
	})
	metricChanges = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: "apisix_identity", Subsystem: Name, Name: "membership_changes_total",
		Help: "Membership changes detected (one per user and fetch that differs from the last known list).",
	})
	metricInvalidations = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: "apisix_identity", Subsystem: Name, Name: "invalidations_total",
		Help: "Users whose cached claims were invalidated, by source (webhook, admin_events).",
	}, []string{"source"})
	metricInvalidationsRefused = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: "apisix_identity", Subsystem: Name, Name: "invalidations_refused_total",
		Help: "Invalidation calls refused: bad signature, too old, replayed, or the replay record full or unreachable.",
	})
	metricWatcherLag = promauto.NewGauge(prometheus.GaugeOpts{
		Namespace: "apisix_identity", Subsystem: Name, Name: "event_watcher_lag_seconds",
		Help: "Age of the newest admin event processed when it was processed (0 when idle).",
	})
	metricWatcherPolls = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: "apisix_identity", Subsystem: Name, Name: "event_watcher_polls_total",
		Help: "Admin event polls, by result (ok, error, not_leader).",
	}, []string{"result"})
	metricRevocations = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: "apisix_identity", Subsystem: Name, Name: "event_watcher_revocations_total",
		Help: "Revocations the admin event watcher made, by cause (sign_out, session_deleted, user_disabled, user_deleted).",
	}, []string{"cause"})
	metricAccessRefusals = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: "apisix_identity", Subsystem: Name, Name: "access_refusals_total",
		Help: "Requests an access rule (require, tenant) refused, by route (APISIX route id) and reason.",
	}, []string{"route", "reason"})
	metricConfigErrors = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: "apisix_identity", Subsystem: Name, Name: "config_errors_total",
		Help: "Route configs refused by orgsync (those routes answer 500).",
	})

	// The request path's series, resolved once.
	countMisconfigured = metricRequests.WithLabelValues("misconfigured")
	countAnonymous     = metricRequests.WithLabelValues("anonymous")
	countRefused       = metricRequests.WithLabelValues("refused")
	countDenied        = metricRequests.WithLabelValues("denied")
	countForbidden     = metricRequests.WithLabelValues("forbidden")
	countInvalidate    = metricRequests.WithLabelValues("invalidate")
	countKeycloak      = metricRequests.WithLabelValues(SourceKeycloak)
	countCache         = metricRequests.WithLabelValues(SourceCache)
	countStale         = metricRequests.WithLabelValues(SourceStale)
	countToken         = metricRequests.WithLabelValues(SourceToken)
)

// countSource counts a served request by where its data came from: a
// switch, not a map, as it runs on every request.
func countSource(source string) {
	switch source {
	case SourceCache:
		countCache.Inc()
	case SourceKeycloak:
		countKeycloak.Inc()
	case SourceStale:
		countStale.Inc()
	case SourceToken:
		countToken.Inc()
	}
}

// The watcher's results exist from the start, at 0: a watcher that never
// succeeds (view-events missing from day one) must export ok at 0, not no
// series at all, for IdentityRunnerWatcherFailing to see it.
var (
	pollsOK        = metricWatcherPolls.WithLabelValues("ok")
	pollsError     = metricWatcherPolls.WithLabelValues("error")
	pollsNotLeader = metricWatcherPolls.WithLabelValues("not_leader")
)
