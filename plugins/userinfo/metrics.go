package userinfo

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	metricRequests = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: "apisix_identity", Subsystem: Name, Name: "requests_total",
		Help: "Requests seen by userinfo, by outcome (verified, anonymous, rejected, misconfigured, jwks, backchannel_logout).",
	}, []string{"outcome"})
	metricFailures = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: "apisix_identity", Subsystem: Name, Name: "verification_failures_total",
		Help: "Identities that failed verification, by reason.",
	}, []string{"reason"})
	metricLogouts = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: "apisix_identity", Subsystem: Name, Name: "backchannel_logouts_total",
		Help: "Logout tokens accepted by the back-channel logout route (each revoked a session or a user's sessions).",
	})
	metricConfigErrors = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: "apisix_identity", Subsystem: Name, Name: "config_errors_total",
		Help: "Route configs refused by userinfo (those routes answer 500).",
	})

	// The request path's series, resolved once: a label lookup per request
	// costs a hash and a lock.
	countVerified      = metricRequests.WithLabelValues("verified")
	countAnonymous     = metricRequests.WithLabelValues("anonymous")
	countRejected      = metricRequests.WithLabelValues("rejected")
	countMisconfigured = metricRequests.WithLabelValues("misconfigured")
	countJWKS          = metricRequests.WithLabelValues("jwks")
	countBackchannel   = metricRequests.WithLabelValues("backchannel_logout")
)

// countFailure counts a refusal reason (off the hot path: refusals only).
func countFailure(reason string) { metricFailures.WithLabelValues(reason).Inc() }
