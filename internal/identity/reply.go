package identity

import (
	"encoding/json"
	"net/http"
)

// Refuse answers the client directly (APISIX does not call the upstream) with
// a JSON body naming the reason. reason is a stable code such as
// "token_expired"; detail is for humans and never holds a token or a secret.
func Refuse(w http.ResponseWriter, status int, reason, detail string) {
	body, _ := json.Marshal(struct {
		Error  string `json:"error"`
		Reason string `json:"reason"`
		Detail string `json:"detail,omitempty"`
	}{Error: http.StatusText(status), Reason: reason, Detail: detail})
	w.Header().Set("Content-Type", "application/json")
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
