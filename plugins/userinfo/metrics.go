package userinfo

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	metricRequests = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: "apisix_identity", Subsystem: Name, Name: "requests_total",
		Help: "Requests seen by userinfo, by outcome (verified, handed_off, anonymous, rejected, misconfigured, jwks).",
	}, []string{"outcome"})
	metricFailures = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: "apisix_identity", Subsystem: Name, Name: "verification_failures_total",
		Help: "Identities that failed verification, by reason.",
	}, []string{"reason"})
	metricAssertions = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: "apisix_identity", Subsystem: Name, Name: "assertions_signed_total",
		Help: "Identity assertions signed.",
	})
	metricConfigErrors = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: "apisix_identity", Subsystem: Name, Name: "config_errors_total",
		Help: "Route configs refused by userinfo (those routes answer 500).",
	})
)
