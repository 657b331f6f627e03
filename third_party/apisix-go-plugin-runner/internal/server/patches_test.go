// Tests of the apisix-identity-runner patches (PATCHES.md) to the frame
// reads, through handleConn as APISIX drives it.

package server

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	A6 "github.com/api7/ext-plugin-proto/go/A6"
	ei "github.com/api7/ext-plugin-proto/go/A6/ExtraInfo"
	hrc "github.com/api7/ext-plugin-proto/go/A6/HTTPReqCall"
	pc "github.com/api7/ext-plugin-proto/go/A6/PrepareConf"
	flatbuffers "github.com/google/flatbuffers/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apache/apisix-go-plugin-runner/internal/plugin"
	"github.com/apache/apisix-go-plugin-runner/internal/util"
	pkgHTTP "github.com/apache/apisix-go-plugin-runner/pkg/http"
)

// chunkyConn hands out at most max bytes per Read, as a unix socket does
// with a frame larger than what the kernel holds at once (about 219 KB),
// only sooner and every time.
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

// serveChunky starts handleConn on one end of a unix socket pair, reading
// at most max bytes per Read, and returns APISIX's end.
func serveChunky(t *testing.T, max int) net.Conn {
	t.Helper()
	return serveWith(t, max, Options{})
}

// serveWith is serveChunky with the server's options.
func serveWith(t *testing.T, max int, o Options) net.Conn {
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
	}
	done := make(chan struct{})
	go func() {
		handleConn(chunkyConn{Conn: conns[0], max: max}, o)
		close(done)
	}()
	t.Cleanup(func() {
		conns[1].Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("handleConn did not end after APISIX closed the connection")
		}
	})
	return conns[1]
}

// send writes one frame in a single write, as init.lua's send does.
func send(t *testing.T, c net.Conn, ty byte, payload []byte) {
	t.Helper()
	out := make([]byte, util.HeaderLen+len(payload))
	binary.BigEndian.PutUint32(out, uint32(len(payload)))
	out[0] = ty
	copy(out[util.HeaderLen:], payload)
	require.NoError(t, c.SetWriteDeadline(time.Now().Add(5*time.Second)))
	_, err := c.Write(out)
	require.NoError(t, err)
}

func receive(t *testing.T, c net.Conn) (byte, []byte) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	hdr := make([]byte, util.HeaderLen)
	_, err := io.ReadFull(c, hdr)
	require.NoError(t, err, "no answer from the runner")
	ty := hdr[0]
	hdr[0] = 0
	buf := make([]byte, binary.BigEndian.Uint32(hdr))
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	return ty, buf
}

func prepareConfPayload(key string, conf map[string]string) []byte {
	b := flatbuffers.NewBuilder(1024)
	var entries []flatbuffers.UOffsetT
	for name, value := range conf {
		n, v := b.CreateString(name), b.CreateString(value)
		A6.TextEntryStart(b)
		A6.TextEntryAddName(b, n)
		A6.TextEntryAddValue(b, v)
		entries = append(entries, A6.TextEntryEnd(b))
	}
	pc.ReqStartConfVector(b, len(entries))
	for i := len(entries) - 1; i >= 0; i-- {
		b.PrependUOffsetT(entries[i])
	}
	vec := b.EndVector(len(entries))
	k := b.CreateString(key)
	pc.ReqStart(b)
	pc.ReqAddKey(b, k)
	pc.ReqAddConf(b, vec)
	b.Finish(pc.ReqEnd(b))
	return b.FinishedBytes()
}

func prepareConf(t *testing.T, c net.Conn, key string, conf map[string]string) uint32 {
	t.Helper()
	send(t, c, util.RPCPrepareConf, prepareConfPayload(key, conf))
	ty, buf := receive(t, c)
	require.Equal(t, byte(util.RPCPrepareConf), ty, "answer to PrepareConf %s", key)
	return pc.GetRootAsResp(buf, 0).ConfToken()
}

func reqCallPayload(id, token uint32) []byte {
	b := flatbuffers.NewBuilder(256)
	path := b.CreateString("/hooks/keycloak")
	hrc.ReqStart(b)
	hrc.ReqAddId(b, id)
	hrc.ReqAddConfToken(b, token)
	hrc.ReqAddPath(b, path)
	hrc.ReqAddMethod(b, A6.MethodPOST)
	b.Finish(hrc.ReqEnd(b))
	return b.FinishedBytes()
}

func extraInfoAnswer(result []byte) []byte {
	b := flatbuffers.NewBuilder(len(result) + 64)
	res := b.CreateByteVector(result)
	ei.RespStart(b)
	ei.RespAddResult(b, res)
	b.Finish(ei.RespEnd(b))
	return b.FinishedBytes()
}

// call sends one HTTPReqCall, answers the runner's ReqBody ExtraInfo call
// with body, and returns the Rewrite's headers.
func call(t *testing.T, c net.Conn, id, token uint32, body []byte) http.Header {
	t.Helper()
	send(t, c, util.RPCHTTPReqCall, reqCallPayload(id, token))
	ty, buf := receive(t, c)
	require.Equal(t, byte(util.RPCExtraInfo), ty, "request %d: want the body request first", id)
	require.Equal(t, ei.InfoReqBody, ei.GetRootAsReq(buf, 0).InfoType())
	send(t, c, util.RPCExtraInfo, extraInfoAnswer(body))

	ty, buf = receive(t, c)
	require.Equal(t, byte(util.RPCHTTPReqCall), ty, "request %d: answer type", id)
	resp := hrc.GetRootAsResp(buf, 0)
	require.Equal(t, id, resp.Id(), "the answer belongs to another request")
	require.Equal(t, hrc.ActionRewrite, resp.ActionType())
	tab := &flatbuffers.Table{}
	require.True(t, resp.Action(tab))
	rw := &hrc.Rewrite{}
	rw.Init(tab.Bytes, tab.Pos)
	h := http.Header{}
	for i := 0; i < rw.HeadersLength(); i++ {
		e := &A6.TextEntry{}
		rw.Headers(e, i)
		h.Add(string(e.Name()), string(e.Value()))
	}
	return h
}

const bodyPlugin = "apisix-identity-runner-patch-test-body"

func init() {
	// Reports what r.Body() gave: its length and a digest of its tail.
	err := plugin.RegisterPlugin(bodyPlugin,
		func(in []byte) (interface{}, error) { return nil, nil },
		func(_ interface{}, _ http.ResponseWriter, r pkgHTTP.Request) {
			b, err := r.Body()
			if err != nil {
				r.Header().Set("X-Body-Err", err.Error())
				return
			}
			r.Header().Set("X-Body-Len", strconv.Itoa(len(b)))
			if len(b) > 8 {
				b = b[len(b)-8:]
			}
			r.Header().Set("X-Body-Tail", string(b))
		},
		func(interface{}, pkgHTTP.Response) {})
	if err != nil {
		panic(err)
	}
}

// longConfCache gives the test a conf cache whose tokens outlive it (the
// package's init sets 1 s), then restores a fresh 1 s cache for the others.
func longConfCache(t *testing.T) {
	plugin.InitConfCache(time.Minute)
	t.Cleanup(func() { plugin.InitConfCache(time.Second) })
}

func TestFramesLargerThanOneReadAreServed(t *testing.T) {
	longConfCache(t)
	for _, tc := range []struct {
		readMax, confBytes int
	}{{1, 2 << 10}, {4096, 300 << 10}, {64 << 10, 1 << 20}} {
		c := serveChunky(t, tc.readMax)
		conf := map[string]string{"no-such-plugin": strings.Repeat("x", tc.confBytes)}
		key := "route#big#" + strconv.Itoa(tc.readMax)
		first := prepareConf(t, c, key, conf)
		assert.Equal(t, first, prepareConf(t, c, key, conf),
			"reads of %d bytes: the same key must get the same token", tc.readMax)
	}
}

func TestBodyTailIsNotParsedAsFrames(t *testing.T) {
	// A request body whose tail is a PrepareConf frame, where v0.5.0's short
	// read of the ExtraInfo answer ended. The runner must hand the plugin
	// the whole body, parse none of it as a frame, and answer the next
	// request on the connection with that request's own answer.
	longConfCache(t)
	const readMax = 64 << 10
	c := serveChunky(t, readMax)
	token := prepareConf(t, c, "route#hook", map[string]string{bodyPlugin: "{}"})

	crafted := make([]byte, util.HeaderLen)
	payload := prepareConfPayload("route#planted", map[string]string{bodyPlugin: `{"verify_token":false}`})
	binary.BigEndian.PutUint32(crafted, uint32(len(payload)))
	crafted[0] = util.RPCPrepareConf
	crafted = append(crafted, payload...)

	const size = 220 << 10
	probe := extraInfoAnswer(make([]byte, size))
	at := bytes.Index(probe, make([]byte, size))
	require.True(t, at > 0)
	body := bytes.Repeat([]byte{'a'}, readMax-at) // crafted frame at payload offset readMax
	body = append(body, crafted...)
	body = append(body, bytes.Repeat([]byte{'z'}, size-len(body)-8)...)
	body = append(body, "THE-TAIL"...)
	require.Len(t, body, size)

	h := call(t, c, 1, token, body)
	assert.Empty(t, h.Get("X-Body-Err"))
	assert.Equal(t, strconv.Itoa(size), h.Get("X-Body-Len"))
	assert.Equal(t, "THE-TAIL", h.Get("X-Body-Tail"))

	h = call(t, c, 2, token, []byte("second request"))
	assert.Equal(t, "14", h.Get("X-Body-Len"), "the next request on the connection gets its own answer")

	// No PrepareConf was planted: the crafted frame took no token and its
	// key is unknown (a cached key would get its old token back).
	after := prepareConf(t, c, "route#after", nil)
	assert.Equal(t, token+1, after, "a token was taken between the two PrepareConf calls")
	assert.Equal(t, token+2, prepareConf(t, c, "route#planted", nil), "the crafted key was cached")
}

const echoPlugin = "apisix-identity-runner-patch-test-echo"

func init() {
	// Keeps its conf bytes as ParseConf got them (no copy), and answers
	// each request with them, the request's X-In header and its path.
	err := plugin.RegisterPlugin(echoPlugin,
		func(in []byte) (interface{}, error) { return in, nil },
		func(conf interface{}, _ http.ResponseWriter, r pkgHTTP.Request) {
			r.Header().Set("X-Conf", string(conf.([]byte)))
			r.Header().Set("X-Echo", r.Header().Get("X-In"))
			r.Header().Set("X-Path", string(r.Path()))
		},
		func(interface{}, pkgHTTP.Response) {})
	if err != nil {
		panic(err)
	}
}

func echoCallPayload(id, token uint32, path, in string) []byte {
	b := flatbuffers.NewBuilder(256)
	p := b.CreateString(path)
	n, v := b.CreateString("x-in"), b.CreateString(in)
	A6.TextEntryStart(b)
	A6.TextEntryAddName(b, n)
	A6.TextEntryAddValue(b, v)
	e := A6.TextEntryEnd(b)
	hrc.ReqStartHeadersVector(b, 1)
	b.PrependUOffsetT(e)
	hdrs := b.EndVector(1)
	hrc.ReqStart(b)
	hrc.ReqAddId(b, id)
	hrc.ReqAddConfToken(b, token)
	hrc.ReqAddPath(b, p)
	hrc.ReqAddHeaders(b, hdrs)
	hrc.ReqAddMethod(b, A6.MethodGET)
	b.Finish(hrc.ReqEnd(b))
	return b.FinishedBytes()
}

// TestReusedFramesServeEachRequestItsOwn (patch 8): with ReuseFrames, each
// HTTPReqCall frame of a connection is read over the one before, larger and
// smaller ones and one past maxReusedFrame among them; every answer is its
// own request's, and the conf bytes a plugin kept from ParseConf without
// copying them (PrepareConf frames are not reused) are unchanged.
func TestReusedFramesServeEachRequestItsOwn(t *testing.T) {
	longConfCache(t)
	c := serveWith(t, 1<<20, Options{ReuseFrames: true})
	token := prepareConf(t, c, "reuse", map[string]string{echoPlugin: `{"kept":"as sent"}`})
	sizes := []int{3000, 10, 200, maxReusedFrame + 100, 5, 6000, 1}
	for i, n := range sizes {
		id := uint32(i + 1)
		in := strings.Repeat(string(rune('a'+i)), n)
		path := "/p/" + strconv.Itoa(i)
		send(t, c, util.RPCHTTPReqCall, echoCallPayload(id, token, path, in))
		ty, buf := receive(t, c)
		require.Equal(t, byte(util.RPCHTTPReqCall), ty, "request %d", id)
		resp := hrc.GetRootAsResp(buf, 0)
		require.Equal(t, id, resp.Id())
		tab := &flatbuffers.Table{}
		require.True(t, resp.Action(tab))
		rw := &hrc.Rewrite{}
		rw.Init(tab.Bytes, tab.Pos)
		h := http.Header{}
		for j := 0; j < rw.HeadersLength(); j++ {
			e := &A6.TextEntry{}
			rw.Headers(e, j)
			h.Add(string(e.Name()), string(e.Value()))
		}
		assert.Equal(t, in, h.Get("X-Echo"), "request %d got another request's header", id)
		assert.Equal(t, path, h.Get("X-Path"), "request %d", id)
		assert.Equal(t, `{"kept":"as sent"}`, h.Get("X-Conf"), "request %d: the kept conf bytes changed", id)
	}
}
