// Command upstream is the demo app behind APISIX in docker-compose.yml. It
// answers every request with the headers it received, as JSON, and checks
// the signed identity assertion (X-Identity-Assertion) against the key set
// the runner publishes on its JWKS route, as a real app would.
//
//	upstream                 serve (LISTEN_ADDR, default :8000)
//	upstream healthcheck     exit 0 when the local server answers /healthz
//
// Settings (environment):
//
//	LISTEN_ADDR          address to listen on. Default ":8000".
//	JWKS_URL             the runner's assertion key set, served by APISIX.
//	                     Default "http://apisix:9080/.well-known/identity-assertion/jwks.json".
//	ASSERTION_AUDIENCE   the aud the assertion must carry. Default "demo-app".
//	ASSERTION_ISSUER     the iss the assertion must carry. Default "apisix-identity-runner".
//	ASSERTION_HEADER     the header carrying it. Default "X-Identity-Assertion".
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "healthcheck" {
		os.Exit(healthcheck(env("LISTEN_ADDR", ":8000")))
	}
	slog.SetDefault(slog.New(slog.NewJSONHandler(os.Stdout, nil)).With("service", "demo-upstream"))
	if err := serve(); err != nil {
		slog.Error("demo upstream stopped", "error", err)
		os.Exit(1)
	}
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func serve() error {
	v := &verifier{
		jwksURL:  env("JWKS_URL", "http://apisix:9080/.well-known/identity-assertion/jwks.json"),
		audience: env("ASSERTION_AUDIENCE", "demo-app"),
		issuer:   env("ASSERTION_ISSUER", "apisix-identity-runner"),
		client:   &http.Client{Timeout: 3 * time.Second},
	}
	app := &app{verifier: v, header: env("ASSERTION_HEADER", "X-Identity-Assertion")}
	srv := &http.Server{
		Addr:              env("LISTEN_ADDR", ":8000"),
		Handler:           app.routes(),
		ReadHeaderTimeout: 5 * time.Second,
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	slog.Info("demo upstream listening", "addr", srv.Addr, "jwks_url", v.jwksURL, "audience", v.audience)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutdown)
}

// healthcheck asks the local server for /healthz: the container image has no
// curl, so the binary checks itself.
func healthcheck(listen string) int {
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck: LISTEN_ADDR:", err)
		return 1
	}
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://127.0.0.1:" + port + "/healthz")
	if err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		return 1
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, "healthcheck: status", resp.StatusCode)
		return 1
	}
	return 0
}

type app struct {
	verifier *verifier
	header   string
}

func (a *app) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`+"\n")
	})
	mux.HandleFunc("/", a.echo)
	return mux
}

// report is what the demo app answers: what it received and what it made of it.
type report struct {
	Method    string            `json:"method"`
	Path      string            `json:"path"`
	Headers   map[string]string `json:"headers"`
	Userinfo  any               `json:"userinfo,omitempty"`
	Assertion assertionReport   `json:"assertion"`
}

type assertionReport struct {
	Present bool           `json:"present"`
	Valid   bool           `json:"valid"`
	Error   string         `json:"error,omitempty"`
	Claims  map[string]any `json:"claims,omitempty"`
}

// shownTokens are headers whose value is a credential: the demo shows that
// they arrived, not what they hold.
var shownTokens = map[string]bool{"X-Access-Token": true, "Authorization": true, "Cookie": true}

func (a *app) echo(w http.ResponseWriter, r *http.Request) {
	rep := report{Method: r.Method, Path: r.URL.Path, Headers: map[string]string{}}
	names := make([]string, 0, len(r.Header))
	for name := range r.Header {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		v := strings.Join(r.Header.Values(name), ", ")
		if shownTokens[name] {
			v = fmt.Sprintf("(%d bytes, not shown)", len(v))
		}
		rep.Headers[name] = v
	}
	if ui := r.Header.Get("X-Userinfo"); ui != "" {
		rep.Userinfo = decodeUserinfo(ui)
	}
	if raw := r.Header.Get(a.header); raw != "" {
		rep.Assertion.Present = true
		claims, err := a.verifier.verify(r.Context(), raw)
		if err != nil {
			rep.Assertion.Error = err.Error()
		} else {
			rep.Assertion.Valid = true
			rep.Assertion.Claims = claims
		}
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(rep)
}

// decodeUserinfo shows X-Userinfo as APISIX sends it: base64 of a JSON
// object. An app must not trust it unless the gateway verified it; the
// assertion is the part to trust.
func decodeUserinfo(v string) any {
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		if b, err = base64.RawURLEncoding.DecodeString(v); err != nil {
			return "(not base64)"
		}
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		return "(not JSON)"
	}
	return out
}

// verifier checks assertions against the runner's JWKS, fetched lazily and
// again when a token names a key it does not know (key rotation), at most
// once per refetchEvery.
type verifier struct {
	jwksURL  string
	audience string
	issuer   string
	client   *http.Client
	now      func() time.Time // nil: time.Now

	mu      sync.Mutex
	keys    *jose.JSONWebKeySet
	fetched time.Time
}

const (
	refetchEvery = 10 * time.Second
	leeway       = 5 * time.Second
)

var algorithms = []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA}

func (v *verifier) clock() time.Time {
	if v.now != nil {
		return v.now()
	}
	return time.Now()
}

// verify returns the assertion's claims when it is signed by a published key,
// unexpired, and issued by and for the expected parties.
func (v *verifier) verify(ctx context.Context, raw string) (map[string]any, error) {
	tok, err := jwt.ParseSigned(raw, algorithms)
	if err != nil {
		return nil, fmt.Errorf("assertion: malformed: %w", err)
	}
	if len(tok.Headers) != 1 || tok.Headers[0].KeyID == "" {
		return nil, errors.New("assertion: no kid in the header")
	}
	key, err := v.key(ctx, tok.Headers[0].KeyID)
	if err != nil {
		return nil, err
	}
	var std jwt.Claims
	var all map[string]any
	if err := tok.Claims(key.Key, &std, &all); err != nil {
		return nil, fmt.Errorf("assertion: signature: %w", err)
	}
	if std.Expiry == nil {
		return nil, errors.New("assertion: no exp")
	}
	err = std.ValidateWithLeeway(jwt.Expected{
		Issuer:      v.issuer,
		AnyAudience: jwt.Audience{v.audience},
		Time:        v.clock(),
	}, leeway)
	if err != nil {
		return nil, fmt.Errorf("assertion: %w", err)
	}
	if std.Subject == "" {
		return nil, errors.New("assertion: no sub")
	}
	return all, nil
}

func (v *verifier) key(ctx context.Context, kid string) (*jose.JSONWebKey, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.keys != nil {
		if ks := v.keys.Key(kid); len(ks) > 0 {
			return &ks[0], nil
		}
		if v.clock().Sub(v.fetched) < refetchEvery {
			return nil, fmt.Errorf("assertion: unknown kid %q", kid)
		}
	}
	keys, err := v.fetch(ctx)
	if err != nil {
		return nil, err
	}
	v.keys, v.fetched = keys, v.clock()
	if ks := keys.Key(kid); len(ks) > 0 {
		return &ks[0], nil
	}
	return nil, fmt.Errorf("assertion: unknown kid %q", kid)
}

func (v *verifier) fetch(ctx context.Context) (*jose.JSONWebKeySet, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.jwksURL, nil)
	if err != nil {
		return nil, fmt.Errorf("assertion: jwks %s: %w", v.jwksURL, err)
	}
	resp, err := v.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("assertion: jwks %s: %w", v.jwksURL, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("assertion: jwks %s: status %d", v.jwksURL, resp.StatusCode)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		return nil, fmt.Errorf("assertion: jwks %s: %w", v.jwksURL, err)
	}
	if len(set.Keys) == 0 {
		return nil, fmt.Errorf("assertion: jwks %s: no keys", v.jwksURL)
	}
	return &set, nil
}
