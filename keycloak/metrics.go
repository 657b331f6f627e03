package keycloak

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Endpoint names used as the "endpoint" label and by (*Client).Requests.
const (
	EndpointToken               = "token"
	EndpointUserOrganizations   = "user_organizations"
	EndpointUser                = "user"
	EndpointUserGroups          = "user_groups"
	EndpointUserRealmRoles      = "user_realm_roles"
	EndpointUserSearch          = "user_search"
	EndpointOrganizationMembers = "organization_members"
	EndpointAdminEvents         = "admin_events"
	EndpointServerInfo          = "server_info"
	// Keycloak 26.6+: a member's groups within one organization.
	EndpointOrganizationMemberGroups = "organization_member_groups"
	EndpointOrganizationGroups       = "organization_groups"
	EndpointOrganizations            = "organizations"
	EndpointClients                  = "clients"
	EndpointUserClientRoles          = "user_client_roles"
)

// Values of the "status" label besides HTTP status codes.
const (
	statusConnError  = "error"       // connection refused, reset, bad response
	statusTimeout    = "timeout"     // the per-call Timeout fired
	statusCanceled   = "canceled"    // the caller's context ended first
	statusCoolingOff = "cooling_off" // the circuit breaker refused the call; Keycloak was not asked
)

var (
	requestsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: "apisix_identity",
		Subsystem: "keycloak",
		Name:      "requests_total",
		Help:      "Calls to Keycloak by endpoint and result: the HTTP status code, error, timeout, canceled or cooling_off.",
	}, []string{"endpoint", "status"})

	requestDuration = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "apisix_identity",
		Subsystem: "keycloak",
		Name:      "request_duration_seconds",
		Help:      "Latency of calls to Keycloak that were sent, by endpoint.",
		Buckets:   []float64{.0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"endpoint"})

	breakerOpen = promauto.NewGauge(prometheus.GaugeOpts{
		Namespace: "apisix_identity",
		Subsystem: "keycloak",
		Name:      "breaker_open",
		Help:      "1 while the circuit breaker in front of Keycloak is open (calls fail fast), else 0.",
	})

	breakerTrips = promauto.NewCounter(prometheus.CounterOpts{
		Namespace: "apisix_identity",
		Subsystem: "keycloak",
		Name:      "breaker_trips_total",
		Help:      "Times the circuit breaker in front of Keycloak opened.",
	})

	tokenRenewals = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: "apisix_identity",
		Subsystem: "keycloak",
		Name:      "token_renewals_total",
		Help:      "Service-account token fetches by result (ok, error).",
	}, []string{"result"})
)
