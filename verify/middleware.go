package verify

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
)

type contextKey struct{}

// NewContext returns ctx carrying id.
func NewContext(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, contextKey{}, id)
}

// FromContext returns the identity the middleware verified.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(contextKey{}).(Identity)
	return id, ok
}

// Middleware passes a request on with its verified identity in the context
// (FromContext), and answers every other request itself: 401 when the
// assertion is missing or refused, 503 when the key set cannot be had (the
// gateway's fault: telling the client its credentials are bad would be
// wrong). The reason is logged at Info (a missing assertion at Debug), never
// the assertion.
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := v.Verify(r)
		if err != nil {
			reason := ReasonOf(err)
			status := http.StatusUnauthorized
			if reason == ReasonKeysUnavailable {
				status = http.StatusServiceUnavailable
			}
			level := slog.LevelInfo
			if reason == ReasonMissing {
				// Every anonymous request: not worth a line by default.
				level = slog.LevelDebug
			}
			v.log.Log(r.Context(), level, "identity assertion refused", "reason", reason, "error", err, "path", r.URL.Path)
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(status)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "identity_assertion", "reason": string(reason)})
			return
		}
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), id)))
	})
}
