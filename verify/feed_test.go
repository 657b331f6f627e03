package verify_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/cache"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/assertion"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/redistest"
	"github.com/apisix-identity-runner/apisix-identity-runner/plugins/orgsync"
	"github.com/apisix-identity-runner/apisix-identity-runner/verify"
)

// feedRig is a Redis with the runner's cache writing the feed as orgsync does, and a reader
// holding the gateway's key set.
type feedRig struct {
	t      *testing.T
	rdb    *redis.Client
	writer *cache.Cache
	keys   *assertion.KeyRing
	reader *verify.FeedReader
	skips  []verify.FeedReason
}

func newFeedRig(t *testing.T, prefix string) *feedRig {
	srv := redistest.Start(t)
	keys, err := assertion.Generate()
	require.NoError(t, err)
	w, err := cache.New(t.Context(), &cache.Options{RedisURL: srv.URL(), KeyPrefix: prefix,
		ValueSecret: []byte("feed test value secret, 32 bytes")})
	require.NoError(t, err)
	t.Cleanup(func() { _ = w.Close() })
	o, err := redis.ParseURL(srv.URL())
	require.NoError(t, err)
	rdb := redis.NewClient(o)
	t.Cleanup(func() { _ = rdb.Close() })
	v, err := verify.New(verify.Config{JWKS: keys.JWKS(), Issuer: "apisix-identity-runner", Audience: "app"})
	require.NoError(t, err)
	r := &feedRig{t: t, rdb: rdb, writer: w, keys: keys}
	r.reader, err = verify.NewFeedReader(verify.FeedConfig{Redis: rdb, Verifier: v, Stream: prefix + "feed:" + orgsync.FeedStream,
		OnSkip: func(_ string, err *verify.FeedError) { r.skips = append(r.skips, err.Reason) }})
	require.NoError(t, err)
	return r
}

// genuine appends an entry as orgsync's recordChange does, and returns its fields.
func (r *feedRig) genuine(user string, added, removed []string) map[string]string {
	f := orgsync.FeedFields(user, added, removed, orgsync.SourceKeycloak, time.Now())
	require.NoError(r.t, orgsync.SignFeedFields(r.keys, r.writer.FeedKey(orgsync.FeedStream), f))
	require.NoError(r.t, r.writer.AppendFeed(r.t.Context(), orgsync.FeedStream, orgsync.FeedMaxLen, f))
	return f
}

// raw appends fields straight into the stream, as anyone who can write Redis can.
func (r *feedRig) raw(stream string, fields map[string]string) {
	values := make([]any, 0, 2*len(fields))
	for k, v := range fields {
		values = append(values, k, v)
	}
	require.NoError(r.t, r.rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, Values: values}).Err())
}

func (r *feedRig) read() []verify.Change {
	out, err := r.reader.Read(r.t.Context(), 100, 0)
	require.NoError(r.t, err)
	return out
}

func TestFeedReaderReturnsGenuineChanges(t *testing.T) {
	r := newFeedRig(t, "feedtest:")
	r.genuine("u-alice", []string{"globex"}, nil)
	r.genuine("u-alice", nil, []string{"acme"})
	got := r.read()
	require.Len(t, got, 2)
	assert.Equal(t, "u-alice", got[0].User)
	assert.Equal(t, []string{"globex"}, got[0].Added)
	assert.Empty(t, got[0].Removed)
	assert.Equal(t, []string{"acme"}, got[1].Removed)
	assert.Equal(t, orgsync.SourceKeycloak, got[1].Source)
	assert.WithinDuration(t, time.Now(), got[1].At, 5*time.Second)
	assert.Equal(t, got[1].ID, r.reader.Position())
	assert.Empty(t, r.read(), "nothing new")
	assert.Zero(t, r.reader.Skipped())
}

// Whoever can write Redis appends entries of its own: each is skipped and counted, and the
// genuine ones around them still arrive in order.
func TestFeedReaderSkipsForgedEntries(t *testing.T) {
	const prefix = "feedtest:"
	r := newFeedRig(t, prefix)
	stream := prefix + "feed:" + orgsync.FeedStream
	other, err := assertion.Generate()
	require.NoError(t, err)
	signedBy := func(k *assertion.KeyRing, streamKey string, f map[string]string) map[string]string {
		require.NoError(t, orgsync.SignFeedFields(k, streamKey, f))
		return f
	}
	grant := func() map[string]string {
		return orgsync.FeedFields("u-mallory", []string{"staff"}, nil, orgsync.SourceKeycloak, time.Now())
	}

	first := r.genuine("u-alice", []string{"globex"}, nil)
	r.raw(stream, grant())                                                       // unsigned
	r.raw(stream, signedBy(other, stream, grant()))                              // a key the app does not trust
	r.raw(stream, signedBy(r.keys, "other-fleet:feed:orgsync:changes", grant())) // genuine, for another stream
	altered := signedBy(r.keys, stream, grant())
	altered["added"] = `["admins"]`
	r.raw(stream, altered)
	extra := signedBy(r.keys, stream, grant())
	extra["note"] = "unsigned field"
	r.raw(stream, extra)
	// An assertion-typed JWS over the same payload: a signature made for another purpose.
	asAssertion := grant()
	payload := map[string]string{"stream": stream}
	for k, v := range asAssertion {
		payload[k] = v
	}
	b, err := json.Marshal(payload)
	require.NoError(t, err)
	asAssertion["sig"], err = r.keys.Sign(b)
	require.NoError(t, err)
	r.raw(stream, asAssertion)
	// The first genuine entry again: a replay gets a new stream id, long after it was signed.
	old := map[string]string{}
	for k, v := range first {
		old[k] = v
	}
	at, err := time.Parse(time.RFC3339Nano, old["at"])
	require.NoError(t, err)
	resigned := orgsync.FeedFields("u-alice", []string{"globex"}, nil, orgsync.SourceKeycloak, at.Add(-2*verify.FeedMaxSkew))
	r.raw(stream, signedBy(r.keys, stream, resigned))
	last := r.genuine("u-bob", []string{"acme"}, nil)

	got := r.read()
	require.Len(t, got, 2, "only the runner's own entries")
	assert.Equal(t, "u-alice", got[0].User)
	assert.Equal(t, "u-bob", got[1].User)
	assert.Equal(t, last["user"], got[1].User)
	assert.Equal(t, uint64(7), r.reader.Skipped())
	assert.Equal(t, []verify.FeedReason{verify.FeedUnsigned, verify.FeedUnknownKey, verify.FeedWrongStream,
		verify.FeedAltered, verify.FeedAltered, verify.FeedWrongType, verify.FeedReplayed}, r.skips)
}
