package identity

import (
	"encoding/json"
	"net/http"
)

// Refuse answers the client directly (APISIX does not call the upstream) with
// a JSON body naming the reason, a stable code such as "token_expired". The
// body carries nothing else: details (a key set URL, a config error) can
// describe the deployment, so they go to the log and the metrics only.
func Refuse(w http.ResponseWriter, status int, reason string) {
	body, _ := json.Marshal(struct {
		Error  string `json:"error"`
		Reason string `json:"reason"`
	}{Error: http.StatusText(status), Reason: reason})
	w.Header().Set("Content-Type", "application/json")
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
