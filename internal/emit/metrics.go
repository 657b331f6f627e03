package emit

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// metricAssertions keeps the name it had when userinfo signed: dashboards and
// alerts read it.
var metricAssertions = promauto.NewCounter(prometheus.CounterOpts{
	Namespace: "apisix_identity", Subsystem: "userinfo", Name: "assertions_signed_total",
	Help: "Identity assertions signed (an assertion is reused for the same identity until half its ttl).",
})
