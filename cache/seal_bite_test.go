package cache

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// User ids have one length (Keycloak's are UUIDs), so a value moved between two users' keys
// keeps the key's length: the MAC must cover the key's bytes, not only how many there are.
func TestValueMovedToAKeyOfTheSameLengthFails(t *testing.T) {
	url := needEnv(t, "REDIS_TEST_URL")
	o := Options{RedisURL: url, KeyPrefix: testPrefix(t), OpTimeout: time.Second}
	c := newTestCache(t, o)
	raw := rawClient(t, url)
	p := Policy{Fresh: time.Minute, Stale: time.Hour}
	var admin, user counter

	_, err := c.Get(ctx, "u-admin", p, admin.load("admin-roles"))
	require.NoError(t, err)
	b, err := raw.Get(ctx, o.KeyPrefix+"v:u-admin").Bytes()
	require.NoError(t, err)
	require.NoError(t, raw.Set(ctx, o.KeyPrefix+"v:u-carol", b, time.Hour).Err())

	d := newTestCache(t, o) // another process: nothing of c's in-process tier
	before := testutil.ToFloat64(rejectedMAC)
	r, err := d.Get(ctx, "u-carol", p, user.load("carol-roles"))
	require.NoError(t, err)
	assert.Equal(t, SourceLoader, r.Source, "the admin's value is not carol's")
	assert.Equal(t, "carol-roles1", string(r.Value))
	assert.Greater(t, testutil.ToFloat64(rejectedMAC), before)
}

// A genuine envelope (version, date and MAC) with other bytes after it: the MAC must cover the
// value, or a writer keeps a header it copied and grants whatever it likes.
func TestGenuineEnvelopeOverOtherBytesFails(t *testing.T) {
	url := needEnv(t, "REDIS_TEST_URL")
	o := Options{RedisURL: url, KeyPrefix: testPrefix(t), OpTimeout: time.Second}
	c := newTestCache(t, o)
	raw := rawClient(t, url)
	p := Policy{Fresh: time.Minute, Stale: time.Hour}

	genuine := c.sealEntry("u-mallory", Entry{Value: []byte(`{"account":"disabled"}`), FetchedAt: fetchTime()})
	forged := append(genuine[:envelopeHeader:envelopeHeader], `{"account":"active","roles":["admin"]}`...)
	require.NoError(t, raw.Set(ctx, o.KeyPrefix+"v:u-mallory", forged, time.Hour).Err())

	before := testutil.ToFloat64(rejectedMAC)
	var l counter
	r, err := c.Get(ctx, "u-mallory", p, l.load("keycloak"))
	require.NoError(t, err)
	assert.Equal(t, SourceLoader, r.Source)
	assert.Equal(t, "keycloak1", string(r.Value))
	assert.Greater(t, testutil.ToFloat64(rejectedMAC), before)
}
