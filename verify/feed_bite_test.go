package verify_test

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/plugins/orgsync"
	"github.com/apisix-identity-runner/apisix-identity-runner/verify"
)

// A Redis writer takes a genuine signature (header, kid and all) and puts a payload of its own
// between header and signature: every field matches that payload, the kid is the app's, and
// only the signature itself tells that the app's key never signed it.
func TestFeedReaderSkipsAGenuineHeaderOverAForgedPayload(t *testing.T) {
	const prefix = "feedbite:"
	r := newFeedRig(t, prefix)
	stream := prefix + "feed:" + orgsync.FeedStream
	genuine := orgsync.FeedFields("u-mallory", nil, []string{"suspended"}, orgsync.SourceKeycloak, time.Now())
	require.NoError(t, orgsync.SignFeedFields(r.keys, stream, genuine))

	forged := orgsync.FeedFields("u-mallory", []string{"staff"}, nil, orgsync.SourceKeycloak, time.Now())
	payload := map[string]string{"stream": stream}
	for k, v := range forged {
		payload[k] = v
	}
	b, err := json.Marshal(payload)
	require.NoError(t, err)
	parts := strings.Split(genuine[orgsync.FeedSigField], ".")
	require.Len(t, parts, 3)
	forged[orgsync.FeedSigField] = parts[0] + "." + base64.RawURLEncoding.EncodeToString(b) + "." + parts[2]
	r.raw(stream, forged)
	r.genuine("u-bob", []string{"acme"}, nil)

	got := r.read()
	require.Len(t, got, 1, "only the runner's own entry")
	assert.Equal(t, "u-bob", got[0].User)
	assert.Equal(t, []verify.FeedReason{verify.FeedSignature}, r.skips)
}
