package main

import (
	"encoding/base64"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The cookie must be what lua-resty-session 4 puts in a browser: an 82-byte
// header whose fields a reader of that library would accept, then the
// base64url ciphertext of the size the header states.
func TestRestySessionCookieLayout(t *testing.T) {
	data := []byte(`[[{"access_token":"` + strings.Repeat("eyJhbGciOiJSUzI1NiJ9", 60) + `"},"default"]]`)
	c := restySessionCookie(data)
	const headerEncoded = 110 // base64url of 82 bytes, unpadded
	require.Greater(t, len(c), headerEncoded)
	hdr, err := base64.RawURLEncoding.DecodeString(c[:headerEncoded])
	require.NoError(t, err)
	require.Len(t, hdr, 82)
	assert.Equal(t, byte(1), hdr[0], "cookie type")
	assert.Equal(t, uint16(0x0010), binary.LittleEndian.Uint16(hdr[1:3]), "deflate flag: the data is over 1 KB and compresses")
	created := int64(binary.LittleEndian.Uint64(append(append([]byte{}, hdr[35:40]...), 0, 0, 0)))
	assert.InDelta(t, time.Now().Unix(), created, 5, "creation time")
	size := int(hdr[44]) | int(hdr[45])<<8 | int(hdr[46])<<16
	assert.Equal(t, len(c)-headerEncoded, size, "data size field = the encoded payload that follows")
	_, err = base64.RawURLEncoding.DecodeString(c[headerEncoded:])
	require.NoError(t, err)

	small := restySessionCookie([]byte(`[[{"authenticated":true},"default"]]`))
	hdr, _ = base64.RawURLEncoding.DecodeString(small[:headerEncoded])
	assert.Zero(t, binary.LittleEndian.Uint16(hdr[1:3]), "under the 1 KB threshold: not deflated")
}

// The browser request has the 14 headers of issue 18; the API request none
// of the session's.
func TestRequestHeaders(t *testing.T) {
	id := &identity{sub: "s", accessToken: "a.b.c", userinfo: "dWk=", idToken: "aWQ=", claims: []byte(`{"sub":"s"}`), cookie: "ck"}
	names := func(hs []header) []string {
		var out []string
		for _, h := range hs {
			out = append(out, h.name)
		}
		return out
	}
	assert.Equal(t, []string{"host", "user-agent", "accept", "accept-encoding", "accept-language", "cookie",
		"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port", "x-request-id",
		"x-userinfo", "x-access-token", "x-id-token"}, names(requestHeaders(reqBrowser, id)))
	api := requestHeaders(reqAPI, id)
	assert.NotContains(t, names(api), "cookie")
	assert.NotContains(t, names(api), "x-id-token")
	got := map[string]string{}
	for _, h := range api {
		got[h.name] = h.value
	}
	assert.Equal(t, "Bearer a.b.c", got["authorization"])
	assert.Equal(t, "a.b.c", got["x-access-token"])
	assert.Equal(t, base64.StdEncoding.EncodeToString(id.claims), got["x-userinfo"])
}
