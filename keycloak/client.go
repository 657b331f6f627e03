package keycloak

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Nerzal/gocloak/v14"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/tracing"
)

// Options configure a Client. A zero value means "use the default".
type Options struct {
	// URL is the Keycloak base URL, without "/realms", e.g. "https://sso.example.org". Required.
	URL string
	// Realm is the realm whose users and organizations are read, e.g. "olapps". Required.
	Realm string
	// Issuer is that realm's issuer as its tokens carry it in "iss", e.g.
	// "https://sso.example.org/realms/olapps": only tokens of this issuer are
	// about the users the client reads. Set it when Keycloak's public URL (its
	// hostname setting) differs from URL. Default URL + "/realms/" + Realm; a
	// trailing slash is dropped.
	Issuer string
	// ClientID is the confidential client whose service account calls the admin API. Required.
	// Its service account needs the realm-management roles manage-realm, view-users and view-events
	// (Keycloak 26.7+ also offers view-organizations).
	ClientID string
	// ClientSecret is that client's secret. Required. Never logged.
	ClientSecret string
	// Timeout bounds each HTTP call to Keycloak, token fetches included. Default 3s; must be >= 0.
	Timeout time.Duration
	// FailureThreshold is how many consecutive failures (timeouts, connection errors, 5xx and 429; not other 4xx)
	// open the circuit breaker. Default 5; must be >= 0.
	FailureThreshold int
	// CoolOff is how long an open breaker fails calls with ErrCoolingOff before it lets one trial
	// call through. Default 10s; must be >= 0.
	CoolOff time.Duration
	// Tracer records each call (token fetches included) as a span "keycloak <endpoint>", when the
	// caller's context carries a recording span (a traced request). Default nil: no spans.
	Tracer trace.Tracer
}

func (o *Options) init() error {
	if o.URL == "" {
		return errors.New("keycloak: options: URL is required")
	}
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("keycloak: options: URL %q must be an absolute http(s) URL", o.URL)
	}
	o.URL = strings.TrimRight(o.URL, "/")
	if o.Realm == "" {
		return errors.New("keycloak: options: Realm is required")
	}
	if o.Issuer == "" {
		o.Issuer = o.URL + "/realms/" + url.PathEscape(o.Realm)
	}
	o.Issuer = strings.TrimSuffix(o.Issuer, "/")
	u, err = url.Parse(o.Issuer)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("keycloak: options: Issuer %q must be an absolute http(s) URL without query or fragment", o.Issuer)
	}
	// Keycloak names a realm's issuer {public URL}/realms/{realm}: another
	// ending names another realm, whose users this client does not read.
	if !strings.HasSuffix(u.EscapedPath(), "/realms/"+url.PathEscape(o.Realm)) {
		return fmt.Errorf("keycloak: options: Issuer %q does not end with /realms/%s", o.Issuer, url.PathEscape(o.Realm))
	}
	if o.ClientID == "" || o.ClientSecret == "" {
		return errors.New("keycloak: options: ClientID and ClientSecret are required")
	}
	switch {
	case o.Timeout < 0:
		return fmt.Errorf("keycloak: options: Timeout %s must be >= 0", o.Timeout)
	case o.FailureThreshold < 0:
		return fmt.Errorf("keycloak: options: FailureThreshold %d must be >= 0", o.FailureThreshold)
	case o.CoolOff < 0:
		return fmt.Errorf("keycloak: options: CoolOff %s must be >= 0", o.CoolOff)
	}
	if o.Timeout == 0 {
		o.Timeout = 3 * time.Second
	}
	if o.FailureThreshold == 0 {
		o.FailureThreshold = 5
	}
	if o.CoolOff == 0 {
		o.CoolOff = 10 * time.Second
	}
	return nil
}

// Sentinel errors. Test with errors.Is.
var (
	// ErrUserNotFound: Keycloak has no user with that id or username.
	ErrUserNotFound = errors.New("user not found")
	// ErrOrganizationNotFound: Keycloak has no organization with that id.
	ErrOrganizationNotFound = errors.New("organization not found")
	// ErrOrganizationsDisabled: the realm does not have organizations enabled.
	ErrOrganizationsDisabled = errors.New("organizations not enabled for the realm")
)

// StatusError is an unexpected HTTP status from Keycloak.
type StatusError struct {
	Endpoint string
	Status   int
	// Message is Keycloak's error text, if it gave one (cut to 200 bytes).
	Message string
}

func (e *StatusError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("%s: status %d", e.Endpoint, e.Status)
	}
	return fmt.Sprintf("%s: status %d: %s", e.Endpoint, e.Status, e.Message)
}

// Client calls Keycloak's admin API with a service-account token. It is safe
// for concurrent use; build one per process.
type Client struct {
	opts    Options
	gc      *gocloak.GoCloak
	breaker *breaker
	token   tokenCache

	countMu sync.Mutex
	counts  map[string]*atomic.Int64
}

// New checks opts, fills in defaults and returns a Client. It does not contact Keycloak.
func New(opts *Options) (*Client, error) {
	if opts == nil {
		return nil, errors.New("keycloak: options are required")
	}
	o := *opts
	if err := o.init(); err != nil {
		return nil, err
	}
	gc := gocloak.NewClient(o.URL)
	// resty's defaults are no timeout and a cookie jar; retries would hide failures from the breaker.
	gc.RestyClient().
		SetTimeout(o.Timeout).
		SetRetryCount(0).
		SetCookieJar(nil).
		SetRedirectPolicy(noRedirects{})
	c := &Client{
		opts:    o,
		gc:      gc,
		breaker: newBreaker(o.FailureThreshold, o.CoolOff),
		counts:  map[string]*atomic.Int64{},
	}
	c.breaker.onChange = func(open bool, failures int) {
		if open {
			breakerOpen.Set(1)
			breakerTrips.Inc()
			logger().Warn("keycloak unreachable: failing calls fast", "url", o.URL, "realm", o.Realm,
				"consecutive_failures", failures, "cool_off_seconds", o.CoolOff.Seconds())
			return
		}
		breakerOpen.Set(0)
		// Warn, as the outage was: at the default level the operator sees both ends.
		logger().Warn("keycloak reachable again", "url", o.URL, "realm", o.Realm)
	}
	c.token.now = time.Now
	return c, nil
}

// noRedirects stops resty from following redirects: the admin API never redirects.
type noRedirects struct{}

func (noRedirects) Apply(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Options returns the options in use, defaults filled in.
func (c *Client) Options() Options { return c.opts }

// Realm is the realm whose users and organizations the client reads.
func (c *Client) Realm() string { return c.opts.Realm }

// Issuer is that realm's issuer, as its tokens carry it.
func (c *Client) Issuer() string { return c.opts.Issuer }

// Requests returns how many HTTP requests this Client has sent to the endpoint
// (one of the Endpoint constants), whatever their outcome. Calls refused by the
// breaker are not counted. Tests use it to see whether a lookup reached Keycloak.
func (c *Client) Requests(endpoint string) int64 {
	return c.counter(endpoint).Load()
}

func (c *Client) counter(endpoint string) *atomic.Int64 {
	c.countMu.Lock()
	defer c.countMu.Unlock()
	n, ok := c.counts[endpoint]
	if !ok {
		n = new(atomic.Int64)
		c.counts[endpoint] = n
	}
	return n
}

// Healthy reports whether the circuit breaker lets calls through.
func (c *Client) Healthy() bool { return !c.breaker.isOpen() }

// call is one HTTP request to Keycloak.
type call struct {
	endpoint string
	method   string
	path     string     // below {URL}/admin/realms/{realm}/ (or {URL}/admin/ when server), already escaped
	server   bool       // a server-wide call, not a realm's
	query    url.Values // may be nil
	body     string     // sent as application/json when not empty
}

// response is what came back: the status and the body.
type response struct {
	status int
	body   []byte
}

// guard runs fn under the breaker, the per-call timeout and the metrics.
// fn returns the HTTP status (0 when none came back) and an error.
func (c *Client) guard(ctx context.Context, endpoint string, fn func(ctx context.Context) (int, error)) error {
	if err := c.breaker.allow(); err != nil {
		requestsTotal.WithLabelValues(endpoint, statusCoolingOff).Inc()
		return fmt.Errorf("%s: %w", endpoint, err)
	}
	c.counter(endpoint).Add(1)
	callCtx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	callCtx, span := tracing.Start(callCtx, c.opts.Tracer, "keycloak "+endpoint)
	start := time.Now()
	status, err := fn(callCtx)
	if span.IsRecording() {
		span.SetAttributes(attribute.Int("http.response.status_code", status))
	}
	// A failure is what the breaker counts as one: no answer, 5xx or 429; a 404 is an answer.
	spanErr := err
	if spanErr == nil && overloaded(status) {
		spanErr = errOverloaded
	}
	tracing.End(span, spanErr, statusText(status, spanErr))
	requestDuration.WithLabelValues(endpoint).Observe(time.Since(start).Seconds())

	switch {
	case err == nil && status > 0:
		requestsTotal.WithLabelValues(endpoint, strconv.Itoa(status)).Inc()
		if overloaded(status) {
			c.breaker.done(outcomeFailure)
		} else {
			c.breaker.done(outcomeSuccess)
		}
		return nil
	case ctx.Err() != nil:
		// The caller gave up (or its own deadline passed): nothing learned about Keycloak.
		requestsTotal.WithLabelValues(endpoint, statusCanceled).Inc()
		c.breaker.done(outcomeNeutral)
		return fmt.Errorf("%s: %w", endpoint, ctx.Err())
	case callCtx.Err() != nil || isTimeout(err):
		requestsTotal.WithLabelValues(endpoint, statusTimeout).Inc()
		c.breaker.done(outcomeFailure)
		return fmt.Errorf("%s: no answer within %s: %w", endpoint, c.opts.Timeout, context.DeadlineExceeded)
	default:
		if status > 0 {
			requestsTotal.WithLabelValues(endpoint, strconv.Itoa(status)).Inc()
		} else {
			requestsTotal.WithLabelValues(endpoint, statusConnError).Inc()
		}
		if status > 0 && !overloaded(status) {
			c.breaker.done(outcomeSuccess)
		} else {
			c.breaker.done(outcomeFailure)
		}
		return fmt.Errorf("%s: %w", endpoint, err)
	}
}

// errOverloaded marks a call's span failed when Keycloak answered 5xx or 429.
var errOverloaded = errors.New("keycloak overloaded")

// statusText is a failed call's span status: the HTTP status, or "no answer".
func statusText(status int, err error) string {
	if err == nil {
		return ""
	}
	if status > 0 {
		return strconv.Itoa(status)
	}
	return "no answer"
}

// overloaded reports statuses that say Keycloak cannot serve now: 5xx, and 429 (its rate limit,
// or a proxy's in front of it). They count against the breaker, so that the fleet backs off.
func overloaded(status int) bool {
	return status >= 500 || status == http.StatusTooManyRequests
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return err != nil && errors.As(err, &t) && t.Timeout()
}

// send performs one admin call with the current token. On a 401 it drops the
// token and tries once more with a fresh one.
func (c *Client) send(ctx context.Context, cl call) (*response, error) {
	for attempt := 0; ; attempt++ {
		tok, err := c.token.get(ctx, c)
		if err != nil {
			return nil, err
		}
		var resp *response
		err = c.guard(ctx, cl.endpoint, func(ctx context.Context) (int, error) {
			req := c.gc.RestyClient().R().
				SetContext(ctx).
				SetAuthToken(tok).
				SetHeader("Accept", "application/json").
				SetDoNotParseResponse(false)
			if cl.query != nil {
				req.SetQueryParamsFromValues(cl.query)
			}
			if cl.body != "" {
				req.SetHeader("Content-Type", "application/json").SetBody(cl.body)
			}
			u := c.adminURL(cl.path)
			if cl.server {
				u = c.opts.URL + "/admin/" + cl.path
			}
			r, err := req.Execute(cl.method, u)
			if err != nil {
				return 0, err
			}
			resp = &response{status: r.StatusCode(), body: r.Body()}
			return resp.status, nil
		})
		if err != nil {
			return nil, err
		}
		if resp.status == http.StatusUnauthorized && attempt == 0 {
			c.token.drop(tok)
			continue
		}
		return resp, nil
	}
}

func (c *Client) adminURL(path string) string {
	return c.opts.URL + "/admin/realms/" + url.PathEscape(c.opts.Realm) + "/" + path
}

// getJSON sends a GET and decodes a 200 answer into out. Other statuses come
// back as *StatusError for the caller to translate.
func (c *Client) getJSON(ctx context.Context, endpoint, path string, query url.Values, out any) error {
	resp, err := c.send(ctx, call{endpoint: endpoint, method: http.MethodGet, path: path, query: query})
	if err != nil {
		return err
	}
	if resp.status != http.StatusOK {
		return statusError(endpoint, resp)
	}
	if err := json.Unmarshal(resp.body, out); err != nil {
		return fmt.Errorf("%s: decode answer: %w", endpoint, err)
	}
	return nil
}

func statusError(endpoint string, resp *response) *StatusError {
	return &StatusError{Endpoint: endpoint, Status: resp.status, Message: errorMessage(resp.body)}
}

// errorMessage pulls Keycloak's error text out of an error body.
func errorMessage(body []byte) string {
	var e struct {
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
		ErrorMessage     string `json:"errorMessage"`
	}
	msg := ""
	if json.Unmarshal(body, &e) == nil {
		msg = strings.TrimSpace(strings.Join(nonEmpty(e.Error, e.ErrorDescription, e.ErrorMessage), ": "))
	} else {
		msg = strings.TrimSpace(string(body))
	}
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return msg
}

func nonEmpty(s ...string) []string {
	out := s[:0]
	for _, v := range s {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}
