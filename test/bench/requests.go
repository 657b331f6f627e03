package main

import (
	"bytes"
	"compress/gzip"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"time"
)

// The two requests the identity variants send, as APISIX hands them to the
// runner in ext-plugin-post-req (access phase, after openid-connect).

// browserHeaders is a browser's page request on a route where openid-connect
// keeps the login in a session cookie: the browser's own headers, the session
// cookie, what the load balancer in front of APISIX adds (x-forwarded-*),
// request-id's X-Request-Id, and the three headers openid-connect sets from
// the session (set_userinfo_header, set_access_token_header and
// set_id_token_header all default to true): X-Userinfo is base64 of the
// userinfo JSON, X-Access-Token the raw access token, X-ID-Token base64 of the
// ID token's claims (apisix/plugins/openid-connect.lua).
func browserHeaders(id *identity) []header {
	return []header{
		{"host", "mitxonline.example.org"},
		{"user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"},
		{"accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"},
		{"accept-encoding", "gzip, deflate, br, zstd"},
		{"accept-language", "en-US,en;q=0.9"},
		{"cookie", "session=" + id.cookie},
		{"x-forwarded-for", "198.51.100.23"},
		{"x-forwarded-proto", "https"},
		{"x-forwarded-host", "mitxonline.example.org"},
		{"x-forwarded-port", "443"},
		{"x-request-id", "6f1e7b0a-3c2d-4e5f-8a9b-0c1d2e3f4a5b"},
		{"x-userinfo", id.userinfo},
		{"x-access-token", id.accessToken},
		{"x-id-token", id.idToken},
	}
}

// apiHeaders is a program's call on a route where openid-connect runs with
// bearer_only and use_jwks: the token comes in Authorization (which stays),
// openid-connect verifies it locally and sets X-Access-Token to it and
// X-Userinfo to base64 of the verified token's claims; there is no session,
// so no cookie and no X-ID-Token (apisix/plugins/openid-connect.lua,
// introspect and add_access_token_header).
func apiHeaders(id *identity) []header {
	return []header{
		{"host", "api.mitxonline.example.org"},
		{"user-agent", "python-requests/2.32.3"},
		{"accept", "*/*"},
		{"accept-encoding", "gzip, deflate"},
		{"authorization", "Bearer " + id.accessToken},
		{"x-forwarded-for", "203.0.113.41"},
		{"x-forwarded-proto", "https"},
		{"x-request-id", "0b9c8d7e-6f5a-4b3c-9d2e-1f0a9b8c7d6e"},
		{"x-access-token", id.accessToken},
		{"x-userinfo", base64.StdEncoding.EncodeToString(id.claims)},
	}
}

// The request kinds, as the report names them.
const (
	reqBrowser = "browser"
	reqAPI     = "API"
)

func requestHeaders(kind string, id *identity) []header {
	if kind == reqAPI {
		return apiHeaders(id)
	}
	return browserHeaders(id)
}

// openidcSessionData is what lua-resty-openidc stores in the session after a
// login (openidc.lua, authenticate), as lua-resty-session 4 keeps it: a JSON
// array of [data, audience]. The data holds what openid-connect needs to set
// its three headers on every later request (the ID token's claims, the
// userinfo answer, the access token and its expiry), as a route with
// session_contents {id_token, user, access_token} keeps it. The raw ID token
// and the refresh token, which lua-resty-openidc also keeps when
// session_contents is not set, are left out: with them the cookie passes
// 4 KB and is split in two.
func openidcSessionData(accessToken string, idClaims, user []byte, expires int64) []byte {
	now := time.Now().Unix()
	data := map[string]any{
		"authenticated":           true,
		"last_authenticated":      now,
		"id_token":                json.RawMessage(orNull(idClaims)),
		"user":                    json.RawMessage(orNull(user)),
		"access_token":            accessToken,
		"access_token_expiration": expires,
	}
	b, _ := json.Marshal([]any{[]any{data, "default"}})
	return b
}

// restySessionCookie seals data the way lua-resty-session 4 does with cookie
// storage (lib/resty/session.lua, save): the data deflated (gzip, as its
// utils.deflate, when over the 1 KB compression threshold and smaller for
// it), encrypted with AES-256-GCM, and an 82-byte header (type 1, flags,
// 32-byte session id, creation time, rolling offset, data size, GCM tag,
// idling offset, MAC; integers little-endian) base64url-encoded in front of
// the base64url ciphertext. The key and the MAC are random: the runner never
// opens the cookie, it only carries it; what matters is its size and make.
func restySessionCookie(data []byte) string {
	const flagDeflate = 0x0010
	flags := uint16(0)
	if len(data) > 1024 {
		var z bytes.Buffer
		w := gzip.NewWriter(&z)
		_, _ = w.Write(data)
		_ = w.Close()
		if z.Len() < len(data) {
			data, flags = z.Bytes(), flags|flagDeflate
		}
	}
	le := func(n int, v uint64) []byte {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], v)
		return b[:n]
	}
	random := func(n int) []byte {
		b := make([]byte, n)
		_, _ = rand.Read(b)
		return b
	}
	hdr := make([]byte, 0, 82)
	hdr = append(hdr, 1)                                                             // cookie type
	hdr = append(hdr, le(2, uint64(flags))...)                                       // flags
	hdr = append(hdr, random(32)...)                                                 // session id
	hdr = append(hdr, le(5, uint64(time.Now().Unix()))...)                           // creation time
	hdr = append(hdr, le(4, 0)...)                                                   // rolling offset
	hdr = append(hdr, le(3, uint64(base64.RawURLEncoding.EncodedLen(len(data))))...) // data size (encoded)
	block, _ := aes.NewCipher(random(32))
	gcm, _ := cipher.NewGCM(block)
	sealed := gcm.Seal(nil, random(12), data, hdr) // the header so far is the additional data
	ciphertext, tag := sealed[:len(data)], sealed[len(data):]
	hdr = append(hdr, tag...)
	hdr = append(hdr, le(3, 0)...)   // idling offset
	hdr = append(hdr, random(16)...) // MAC (HMAC-SHA256 truncated to 16 bytes)
	return base64.RawURLEncoding.EncodeToString(hdr) + base64.RawURLEncoding.EncodeToString(ciphertext)
}

func orNull(b []byte) []byte {
	if len(b) == 0 {
		return []byte("null")
	}
	return b
}
