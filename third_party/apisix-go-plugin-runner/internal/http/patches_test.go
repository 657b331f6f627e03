// Tests of the apisix-identity-runner patches (PATCHES.md) to this package.

package http

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/api7/ext-plugin-proto/go/A6"
	ei "github.com/api7/ext-plugin-proto/go/A6/ExtraInfo"
	flatbuffers "github.com/google/flatbuffers/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apache/apisix-go-plugin-runner/internal/util"
	"github.com/apache/apisix-go-plugin-runner/pkg/common"
)

// socketPair returns both ends of a connected unix stream socket, the
// transport APISIX and the runner use.
func socketPair(t *testing.T) (runnerSide, apisixSide net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	require.NoError(t, err)
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		require.NoError(t, err)
		conns[i] = c
		t.Cleanup(func() { c.Close() })
	}
	return conns[0], conns[1]
}

// chunkyConn hands out at most max bytes per Read, as a unix socket does
// when the peer's frame is larger than what the kernel holds at once (about
// 219 KB), only sooner and every time.
type chunkyConn struct {
	net.Conn
	max int
}

func (c chunkyConn) Read(p []byte) (int, error) {
	if len(p) > c.max {
		p = p[:c.max]
	}
	return c.Conn.Read(p)
}

// frame is one frame as APISIX's init.lua sends it: type byte, 3-byte
// big-endian length, payload.
func frame(ty byte, payload []byte) []byte {
	out := make([]byte, util.HeaderLen+len(payload))
	binary.BigEndian.PutUint32(out, uint32(len(payload)))
	out[0] = ty
	copy(out[util.HeaderLen:], payload)
	return out
}

func readFrame(t *testing.T, c net.Conn) (byte, []byte) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	hdr := make([]byte, util.HeaderLen)
	_, err := io.ReadFull(c, hdr)
	require.NoError(t, err)
	ty := hdr[0]
	hdr[0] = 0
	buf := make([]byte, binary.BigEndian.Uint32(hdr))
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	return ty, buf
}

// extraInfoAnswer is APISIX's answer payload carrying result.
func extraInfoAnswer(result []byte) []byte {
	b := flatbuffers.NewBuilder(len(result) + 64)
	res := b.CreateByteVector(result)
	ei.RespStart(b)
	ei.RespAddResult(b, res)
	b.Finish(ei.RespEnd(b))
	return b.FinishedBytes()
}

// answerBody plays APISIX for one ReqBody ExtraInfo call: it reads the
// request and writes answer (one frame header + payload in a single write,
// as init.lua's send does), then, with hangUp, shuts its sending side. It
// reports on done.
func answerBody(c net.Conn, answer []byte, hangUp bool, done chan<- error) {
	go func() {
		hdr := make([]byte, util.HeaderLen)
		if _, err := io.ReadFull(c, hdr); err != nil {
			done <- err
			return
		}
		ty := hdr[0]
		hdr[0] = 0
		req := make([]byte, binary.BigEndian.Uint32(hdr))
		if _, err := io.ReadFull(c, req); err != nil {
			done <- err
			return
		}
		if ty != util.RPCExtraInfo || ei.GetRootAsReq(req, 0).InfoType() != ei.InfoReqBody {
			done <- errors.New("not a ReqBody ExtraInfo request")
			return
		}
		_, err := c.Write(answer)
		if err == nil && hangUp {
			err = c.(*net.UnixConn).CloseWrite()
		}
		done <- err
	}()
}

// assertClosedByRunner checks that the runner closed its end: APISIX's side
// reads EOF, or a reset when the runner closed with unread bytes, never the
// timeout an open connection gives.
func assertClosedByRunner(t *testing.T, apisixSide net.Conn) {
	t.Helper()
	require.NoError(t, apisixSide.SetReadDeadline(time.Now().Add(2*time.Second)))
	_, err := io.Copy(io.Discard, apisixSide)
	var ne net.Error
	assert.False(t, errors.As(err, &ne) && ne.Timeout(),
		"the runner left the connection open after a failed ExtraInfo read")
}

func TestBodyLargerThanOneReadArrivesWhole(t *testing.T) {
	// 1 MB body delivered 4 KB per read: v0.5.0 took the first read as the
	// whole answer and failed.
	runnerSide, apisixSide := socketPair(t)
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	done := make(chan error, 1)
	answerBody(apisixSide, frame(util.RPCExtraInfo, extraInfoAnswer(body)), false, done)

	r := CreateRequest(buildReq(reqOpt{}))
	defer ReuseRequest(r)
	r.BindConn(chunkyConn{Conn: runnerSide, max: 4096})
	got, err := r.Body()
	require.NoError(t, err)
	require.NoError(t, <-done)
	assert.True(t, bytes.Equal(body, got), "body: got %d bytes, want %d", len(got), len(body))
}

func TestBodyTailIsNeverReadAsFrames(t *testing.T) {
	// A body whose tail is a well-formed PrepareConf frame, placed where
	// v0.5.0's short read ended: after Body() the connection must hold
	// nothing more for the runner to parse.
	const chunk = 64 << 10
	runnerSide, apisixSide := socketPair(t)
	crafted := frame(util.RPCPrepareConf, []byte("planted route config"))
	probe := extraInfoAnswer(make([]byte, 220<<10))
	bodyAt := bytes.Index(probe, make([]byte, 220<<10))
	require.True(t, bodyAt > 0)
	// v0.5.0 read the header, then took one read of at most chunk bytes as
	// the payload: the crafted frame starts at payload offset chunk.
	body := bytes.Repeat([]byte{'a'}, chunk-bodyAt)
	body = append(body, crafted...)
	body = append(body, bytes.Repeat([]byte{'z'}, 220<<10-len(body))...)
	answer := frame(util.RPCExtraInfo, extraInfoAnswer(body))
	done := make(chan error, 1)
	answerBody(apisixSide, answer, false, done)

	r := CreateRequest(buildReq(reqOpt{}))
	defer ReuseRequest(r)
	r.BindConn(chunkyConn{Conn: runnerSide, max: chunk})
	got, err := r.Body()
	require.NoError(t, err)
	require.NoError(t, <-done)
	assert.True(t, bytes.Equal(body, got))

	// Nothing of the answer is left on the connection.
	require.NoError(t, runnerSide.SetReadDeadline(time.Now().Add(100*time.Millisecond)))
	n, err := runnerSide.Read(make([]byte, 1))
	assert.Equal(t, 0, n, "bytes of the body were left on the connection")
	var ne net.Error
	assert.True(t, errors.As(err, &ne) && ne.Timeout(), "read after the body: %v", err)
}

func TestExtraInfoAnswerCutShortClosesConnection(t *testing.T) {
	runnerSide, apisixSide := socketPair(t)
	answer := frame(util.RPCExtraInfo, extraInfoAnswer(bytes.Repeat([]byte{'x'}, 10000)))
	done := make(chan error, 1)
	// APISIX stops sending halfway: the rest never comes.
	answerBody(apisixSide, answer[:5000], true, done)

	r := CreateRequest(buildReq(reqOpt{}))
	defer ReuseRequest(r)
	r.BindConn(chunkyConn{Conn: runnerSide, max: 1024})
	_, err := r.Body()
	assert.Equal(t, common.ErrConnClosed, err)
	require.NoError(t, <-done)
	assertClosedByRunner(t, apisixSide)
}

func TestExtraInfoAnswerOfAnotherTypeClosesConnection(t *testing.T) {
	for _, ty := range []byte{util.RPCError, util.RPCPrepareConf, util.RPCHTTPReqCall, util.RPCHTTPRespCall, 9} {
		runnerSide, apisixSide := socketPair(t)
		done := make(chan error, 1)
		answerBody(apisixSide, frame(ty, extraInfoAnswer([]byte("hello"))), false, done)

		r := CreateRequest(buildReq(reqOpt{}))
		r.BindConn(runnerSide)
		body, err := r.Body()
		assert.Equal(t, common.ErrConnClosed, err, "answer of type %d", ty)
		assert.Nil(t, body)
		require.NoError(t, <-done)
		assertClosedByRunner(t, apisixSide)
		ReuseRequest(r)
	}
}

func TestVarAnswerInChunks(t *testing.T) {
	runnerSide, apisixSide := socketPair(t)
	value := bytes.Repeat([]byte("v"), 300<<10)
	go func() {
		ty, _ := readFrame(t, apisixSide)
		if ty == util.RPCExtraInfo {
			_, _ = apisixSide.Write(frame(util.RPCExtraInfo, extraInfoAnswer(value)))
		}
	}()
	r := CreateRequest(buildReq(reqOpt{}))
	defer ReuseRequest(r)
	r.BindConn(chunkyConn{Conn: runnerSide, max: 8192})
	got, err := r.Var("http_cookie")
	require.NoError(t, err)
	assert.Equal(t, len(value), len(got))
}

func TestResponseReadBodyInChunks(t *testing.T) {
	runnerSide, apisixSide := socketPair(t)
	body := bytes.Repeat([]byte("r"), 300<<10)
	go func() {
		ty, _ := readFrame(t, apisixSide)
		if ty == util.RPCExtraInfo {
			_, _ = apisixSide.Write(frame(util.RPCExtraInfo, extraInfoAnswer(body)))
		}
	}()
	r := CreateResponse(buildRespReq(respReqOpt{id: 1}))
	defer ReuseResponse(r)
	r.BindConn(chunkyConn{Conn: runnerSide, max: 8192})
	got, err := r.ReadBody()
	require.NoError(t, err)
	assert.Equal(t, len(body), len(got))
}

// rewriteHeaders is the Rewrite action's header entries; a deletion has
// the value "<deleted>".
func rewriteHeaders(t *testing.T, b *flatbuffers.Builder) map[string][]string {
	t.Helper()
	rw := getRewriteAction(t, b)
	require.NotNil(t, rw)
	out := map[string][]string{}
	for i := 0; i < rw.HeadersLength(); i++ {
		e := &A6.TextEntry{}
		require.True(t, rw.Headers(e, i))
		v := "<deleted>"
		if e.Value() != nil {
			v = string(e.Value())
		}
		out[string(e.Name())] = append(out[string(e.Name())], v)
	}
	return out
}

func TestSetHeaderReplacesEveryValueOfARepeatedHeader(t *testing.T) {
	// APISIX hands a header the client sent twice (or in two letter cases)
	// as two entries with the lower-case name.
	r := CreateRequest(buildReq(reqOpt{headers: []pair{
		{"x-user-orgs", "acme"},
		{"x-user-orgs", "globex"},
		{"x-user-id", "forged-1"},
		{"x-user-id", "forged-2"},
		{"accept", "text/html"},
		{"accept", "application/json"},
	}}))
	defer ReuseRequest(r)
	// The plugin writes the value it trusts; it happens to equal the first
	// one the client sent.
	r.Header().Set("X-User-Orgs", "acme")
	r.Header().Set("X-User-Id", "u-123")

	b := util.GetBuilder()
	defer util.PutBuilder(b)
	require.True(t, r.FetchChanges(1, b))
	got := rewriteHeaders(t, b)
	assert.Equal(t, map[string][]string{
		// One entry each: APISIX's set_header replaces all values with it.
		"X-User-Orgs": {"acme"},
		"X-User-Id":   {"u-123"},
		// Untouched, even though repeated: no entry, APISIX keeps both.
	}, got)
}

func TestHeaderEmptiedThroughViewIsDeleted(t *testing.T) {
	r := CreateRequest(buildReq(reqOpt{headers: []pair{{"x-userinfo", "forged"}}}))
	defer ReuseRequest(r)
	r.Header().View()["X-Userinfo"] = []string{}

	b := util.GetBuilder()
	defer util.PutBuilder(b)
	require.NotPanics(t, func() { r.FetchChanges(1, b) })
	assert.Equal(t, map[string][]string{"X-Userinfo": {"<deleted>"}}, rewriteHeaders(t, b))
}

type ctxKey struct{}

func TestSetContextIsPerRequest(t *testing.T) {
	// Two requests through the same pooled object never see each other's
	// values, and the runner's own deadline context is still cancelled.
	r := CreateRequest(buildReq(reqOpt{}))
	first := r.Context()
	_, hasDeadline := first.Deadline()
	require.True(t, hasDeadline)
	r.SetContext(context.WithValue(r.Context(), ctxKey{}, "request one"))
	assert.Equal(t, "request one", r.Context().Value(ctxKey{}))
	_, hasDeadline = r.Context().Deadline()
	assert.True(t, hasDeadline, "a derived context keeps the 56 s deadline")
	handed := r.Context()

	r.Reset()
	assert.Equal(t, context.Canceled, first.Err(), "Reset must still cancel the request's context")
	assert.Equal(t, context.Canceled, handed.Err())
	assert.Nil(t, r.Context().Value(ctxKey{}), "a reset Request must not carry the previous context")

	ReuseRequest(r)

	// Through the pool: sync.Pool may hand r back or not (the race detector
	// drops entries on purpose), so run many requests, each with its own
	// value, and check none sees another's.
	for i := 0; i < 100; i++ {
		next := CreateRequest(buildReq(reqOpt{}))
		assert.Nil(t, next.Context().Value(ctxKey{}), "request %d sees another request's value", i)
		next.SetContext(context.WithValue(next.Context(), ctxKey{}, i))
		assert.Equal(t, i, next.Context().Value(ctxKey{}))
		ReuseRequest(next)
	}
}

func TestSetContextNilPanics(t *testing.T) {
	r := CreateRequest(buildReq(reqOpt{}))
	defer ReuseRequest(r)
	assert.Panics(t, func() { r.SetContext(nil) }) //nolint:staticcheck // the point of the test
}

func TestHeaderIsBuiltAsV050Built(t *testing.T) {
	// The one-pass Header() must give the maps v0.5.0's Add loop and Clone
	// gave, for names in and out of knownHeaderKeys, repeated names, names
	// in several cases, names textproto leaves alone, empty values.
	in := []pair{
		{"x-userinfo", "a"}, {"X-Userinfo", "b"}, {"x_userinfo", "c"}, {"bad name", "d"},
		{"host", "h"}, {"accept", ""}, {"x-custom-thing", "1"}, {"x-custom-thing", "2"},
		{"cookie", "s=1"}, {"COOKIE", "s=2"}, {"x-user-orgs", "acme"}, {"x-user-orgs", "globex"},
	}
	want := http.Header{}
	for _, p := range in {
		want.Add(p.name, p.value)
	}
	wantRaw := want.Clone()

	r := CreateRequest(buildReq(reqOpt{headers: in}))
	defer ReuseRequest(r)
	got := r.Header().View()
	assert.Equal(t, want, got)
	assert.Equal(t, wantRaw, r.rawHdr)

	// The two maps share no value list: writing one leaves the other.
	got["Accept"] = append(got["Accept"], "appended")
	got["X-Userinfo"][0] = "overwritten"
	assert.Equal(t, wantRaw, r.rawHdr)
	for name, key := range knownHeaderKeys {
		assert.Equal(t, textproto.CanonicalMIMEHeaderKey(name), key)
	}
}
