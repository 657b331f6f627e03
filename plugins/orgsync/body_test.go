package orgsync

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/runnertest"
)

func TestBodyLengthVerdict(t *testing.T) {
	const limit = 64 << 10
	for _, tc := range []struct {
		name   string
		header http.Header
		status int
		reason string
	}{
		{"empty body", http.Header{"Content-Length": {"0"}}, 0, ""},
		{"1 KB", http.Header{"Content-Length": {"1024"}}, 0, ""},
		{"at the cap", http.Header{"Content-Length": {"65536"}}, 0, ""},
		{"leading zeros", http.Header{"Content-Length": {"0065536"}}, 0, ""},
		{"one past the cap", http.Header{"Content-Length": {"65537"}}, 413, ReasonBodyTooLarge},
		{"219 KB", http.Header{"Content-Length": {"224256"}}, 413, ReasonBodyTooLarge},
		{"beyond int64", http.Header{"Content-Length": {"99999999999999999999999"}}, 413, ReasonBodyTooLarge},
		{"missing", http.Header{}, 411, ReasonLengthRequired},
		{"empty value", http.Header{"Content-Length": {""}}, 411, ReasonLengthRequired},
		{"negative", http.Header{"Content-Length": {"-1"}}, 411, ReasonLengthRequired},
		{"plus sign", http.Header{"Content-Length": {"+10"}}, 411, ReasonLengthRequired},
		{"hex", http.Header{"Content-Length": {"0x10"}}, 411, ReasonLengthRequired},
		{"list", http.Header{"Content-Length": {"10, 10"}}, 411, ReasonLengthRequired},
		{"twice", http.Header{"Content-Length": {"10", "10"}}, 411, ReasonLengthRequired},
		{"chunked", http.Header{"Transfer-Encoding": {"chunked"}}, 411, ReasonLengthRequired},
		{"chunked with a length", http.Header{"Transfer-Encoding": {"chunked"}, "Content-Length": {"10"}}, 411, ReasonLengthRequired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, reason, _ := bodyLengthVerdict(tc.header, limit)
			assert.Equal(t, tc.status, status)
			assert.Equal(t, tc.reason, reason)
		})
	}
}

// bodyCounter is a runner request that counts the body round trips.
type bodyCounter struct {
	*runnertest.Request
	bodyCalls int
}

func (r *bodyCounter) Body() ([]byte, error) {
	r.bodyCalls++
	return r.Request.Body()
}

func TestInvalidateRefusesBeforeReadingTheBody(t *testing.T) {
	c := &Conf{secret: []byte("k"), SignatureHeader: "X-Keycloak-Signature", plugin: New(Deps{}),
		limiter: newRateLimiter(1000, 1000)}
	for _, tc := range []struct {
		header map[string]string
		status int
		reason string
	}{
		{map[string]string{}, 411, ReasonLengthRequired},
		{map[string]string{"transfer-encoding": "chunked"}, 411, ReasonLengthRequired},
		{map[string]string{"content-length": "65537"}, 413, ReasonBodyTooLarge},
		{map[string]string{"content-length": "1048576"}, 413, ReasonBodyTooLarge},
	} {
		r := &bodyCounter{Request: runnertest.NewRequest(1, 1, tc.header)}
		r.MethodV = http.MethodPost
		r.BodyV = make([]byte, 1<<20)
		w := httptest.NewRecorder()
		c.serveInvalidate(w, r)
		assert.Equal(t, tc.status, w.Code, "%v", tc.header)
		var answer struct{ Reason string }
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &answer))
		assert.Equal(t, tc.reason, answer.Reason)
		assert.Zero(t, r.bodyCalls, "%v: the body was asked for", tc.header)
	}

	// Within the cap the body is read (and here refused for its signature).
	r := &bodyCounter{Request: runnertest.NewRequest(1, 1, map[string]string{"content-length": "2"})}
	r.MethodV = http.MethodPost
	r.BodyV = []byte("{}")
	w := httptest.NewRecorder()
	c.serveInvalidate(w, r)
	assert.Equal(t, 401, w.Code)
	assert.Equal(t, 1, r.bodyCalls)
}
