// Command upstream is the demo app behind APISIX in docker-compose.yml. It
// answers every request with the headers it received, as JSON, and checks
// the signed identity assertion (X-Identity-Assertion) with the verify
// package against the key set the runner publishes on its JWKS route, as a
// real app would.
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
//	ASSERTION_TOKEN_ISSUER  the realm its user must come from (token_iss: the
//	                     userinfo route's "issuer"). Default "": not checked.
//	ASSERTION_HEADER     the header carrying it. Default "X-Identity-Assertion".
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/apisix-identity-runner/apisix-identity-runner/verify"
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
	jwksURL := env("JWKS_URL", "http://apisix:9080/.well-known/identity-assertion/jwks.json")
	audience := env("ASSERTION_AUDIENCE", "demo-app")
	v, err := verify.New(verify.Config{
		JWKSURL:  jwksURL,
		Audience: audience,
		Issuer:   env("ASSERTION_ISSUER", "apisix-identity-runner"),
		// A user id is unique only within its realm: the stack names the one
		// its routes trust, so a user of another realm is refused.
		TokenIssuer: os.Getenv("ASSERTION_TOKEN_ISSUER"),
		Header:      env("ASSERTION_HEADER", verify.DefaultHeader),
		HTTPClient:  &http.Client{Timeout: 3 * time.Second},
	})
	if err != nil {
		return err
	}
	app := &app{verifier: v}
	srv := &http.Server{
		Addr:              env("LISTEN_ADDR", ":8000"),
		Handler:           app.routes(),
		ReadHeaderTimeout: 5 * time.Second,
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	slog.Info("demo upstream listening", "addr", srv.Addr, "jwks_url", jwksURL, "audience", audience)
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
	verifier *verify.Verifier
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
	// Organizations as verify reads them: alias -> {id, attributes}.
	Organizations map[string]orgReport `json:"organizations,omitempty"`
}

type orgReport struct {
	ID         string              `json:"id,omitempty"`
	Attributes map[string][]string `json:"attributes,omitempty"`
}

func rawClaims(id verify.Identity) map[string]any {
	out := make(map[string]any, len(id.Claims))
	for name, raw := range id.Claims {
		var v any
		if json.Unmarshal(raw, &v) == nil {
			out[name] = v
		}
	}
	return out
}

func organizations(id verify.Identity) map[string]orgReport {
	out := make(map[string]orgReport, len(id.Organizations))
	for _, o := range id.Organizations {
		out[o.Alias] = orgReport{ID: o.ID, Attributes: o.Attributes}
	}
	return out
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
	// The demo shows a refused assertion instead of answering 401 as
	// verify's Middleware would: it is there to be looked at.
	if r.Header.Get(a.verifier.Header()) != "" {
		rep.Assertion.Present = true
		id, err := a.verifier.Verify(r)
		if err != nil {
			rep.Assertion.Error = err.Error()
		} else {
			rep.Assertion.Valid = true
			rep.Assertion.Claims = rawClaims(id)
			rep.Assertion.Organizations = organizations(id)
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
