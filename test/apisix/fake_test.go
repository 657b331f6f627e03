package apisix

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	A6 "github.com/api7/ext-plugin-proto/go/A6"
	A6Err "github.com/api7/ext-plugin-proto/go/A6/Err"
	ei "github.com/api7/ext-plugin-proto/go/A6/ExtraInfo"
	hrc "github.com/api7/ext-plugin-proto/go/A6/HTTPReqCall"
	pc "github.com/api7/ext-plugin-proto/go/A6/PrepareConf"
	flatbuffers "github.com/google/flatbuffers/go"
)

// fakeRunner is an in-process peer for wire-level tests of the client: it
// records exactly what the Gateway sends and answers with hand-made frames,
// including ones the Go runner never sends (Stop with status 0, entries
// without value, error codes).
type fakeRunner struct {
	socket string
	ln     net.Listener
	accept atomic.Int32

	mu       sync.Mutex
	prepares []gotPrepare
	calls    []gotCall
	token    uint32

	// answer writes the reply to one HTTPReqCall; it may first ask ExtraInfo.
	// It returns false to close the connection without a reply.
	answer func(c net.Conn, call gotCall) bool
}

type gotPrepare struct {
	Key     string
	HasConf bool
	Conf    []PluginConf
}

type gotCall struct {
	ID        uint32
	ConfToken uint32
	SrcIP     []byte
	Method    A6.Method
	Path      string
	Args      []textEntry
	Headers   []textEntry
}

func newFakeRunner(t *testing.T, answer func(c net.Conn, call gotCall) bool) *fakeRunner {
	t.Helper()
	dir, err := os.MkdirTemp("", "a6fake-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	f := &fakeRunner{socket: filepath.Join(dir, "s"), answer: answer}
	f.ln, err = net.Listen("unix", f.socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.ln.Close() })
	go func() {
		for {
			c, err := f.ln.Accept()
			if err != nil {
				return
			}
			f.accept.Add(1)
			go f.serve(c)
		}
	}()
	return f
}

func (f *fakeRunner) serve(c net.Conn) {
	defer c.Close()
	for {
		ty, p, err := ReadFrame(c)
		if err != nil {
			return
		}
		switch ty {
		case TypePrepareConf:
			req := pc.GetRootAsReq(p, 0)
			tab := req.Table()
			g := gotPrepare{Key: string(req.Key()), HasConf: tab.Offset(4) != 0}
			for i := 0; i < req.ConfLength(); i++ {
				var te A6.TextEntry
				req.Conf(&te, i)
				g.Conf = append(g.Conf, PluginConf{Name: string(te.Name()), Value: string(te.Value())})
			}
			f.mu.Lock()
			f.prepares = append(f.prepares, g)
			f.token++
			tok := f.token
			f.mu.Unlock()
			b := flatbuffers.NewBuilder(32)
			pc.RespStart(b)
			pc.RespAddConfToken(b, tok)
			b.Finish(pc.RespEnd(b))
			if WriteFrame(c, TypePrepareConf, b.FinishedBytes()) != nil {
				return
			}
		case TypeHTTPReqCall:
			req := hrc.GetRootAsReq(p, 0)
			g := gotCall{
				ID: req.Id(), ConfToken: req.ConfToken(), Method: req.Method(),
				SrcIP: append([]byte(nil), req.SrcIpBytes()...), Path: string(req.Path()),
				Args:    readEntries(req.ArgsLength(), req.Args),
				Headers: readEntries(req.HeadersLength(), req.Headers),
			}
			f.mu.Lock()
			f.calls = append(f.calls, g)
			f.mu.Unlock()
			if !f.answer(c, g) {
				return
			}
		default:
			return
		}
	}
}

func (f *fakeRunner) Prepares() []gotPrepare {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]gotPrepare(nil), f.prepares...)
}

func (f *fakeRunner) Calls() []gotCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]gotCall(nil), f.calls...)
}

// Frames a runner sends.

func passFrame(id uint32) []byte {
	b := flatbuffers.NewBuilder(32)
	hrc.RespStart(b)
	hrc.RespAddId(b, id)
	b.Finish(hrc.RespEnd(b))
	return b.FinishedBytes()
}

func stopFrame(id uint32, status uint16, hdrs []textEntry, body []byte) []byte {
	b := flatbuffers.NewBuilder(256)
	hv := buildTextEntries(b, hdrs, hrc.StopStartHeadersVector)
	var bv flatbuffers.UOffsetT
	if body != nil {
		bv = b.CreateByteVector(body)
	}
	hrc.StopStart(b)
	hrc.StopAddStatus(b, status)
	hrc.StopAddHeaders(b, hv)
	if body != nil {
		hrc.StopAddBody(b, bv)
	}
	stop := hrc.StopEnd(b)
	hrc.RespStart(b)
	hrc.RespAddId(b, id)
	hrc.RespAddActionType(b, hrc.ActionStop)
	hrc.RespAddAction(b, stop)
	b.Finish(hrc.RespEnd(b))
	return b.FinishedBytes()
}

func rewriteFrame(id uint32, path *string, hdrs, args, resp []textEntry) []byte {
	b := flatbuffers.NewBuilder(256)
	var pv flatbuffers.UOffsetT
	if path != nil {
		pv = b.CreateString(*path)
	}
	hv := buildTextEntries(b, hdrs, hrc.RewriteStartHeadersVector)
	av := buildTextEntries(b, args, hrc.RewriteStartArgsVector)
	rv := buildTextEntries(b, resp, hrc.RewriteStartRespHeadersVector)
	hrc.RewriteStart(b)
	if path != nil {
		hrc.RewriteAddPath(b, pv)
	}
	hrc.RewriteAddHeaders(b, hv)
	hrc.RewriteAddArgs(b, av)
	hrc.RewriteAddRespHeaders(b, rv)
	rw := hrc.RewriteEnd(b)
	hrc.RespStart(b)
	hrc.RespAddId(b, id)
	hrc.RespAddActionType(b, hrc.ActionRewrite)
	hrc.RespAddAction(b, rw)
	b.Finish(hrc.RespEnd(b))
	return b.FinishedBytes()
}

func errFrame(code A6Err.Code) []byte {
	b := flatbuffers.NewBuilder(32)
	A6Err.RespStart(b)
	A6Err.RespAddCode(b, code)
	b.Finish(A6Err.RespEnd(b))
	return b.FinishedBytes()
}

// askExtra sends one ExtraInfo request and returns the result (nil when the
// answer has no result vector).
func askExtra(c net.Conn, info ei.Info, varName string) ([]byte, error) {
	b := flatbuffers.NewBuilder(64)
	var off flatbuffers.UOffsetT
	switch info {
	case ei.InfoVar:
		n := b.CreateString(varName)
		ei.VarStart(b)
		ei.VarAddName(b, n)
		off = ei.VarEnd(b)
	case ei.InfoReqBody:
		ei.ReqBodyStart(b)
		off = ei.ReqBodyEnd(b)
	default:
		ei.RespBodyStart(b)
		off = ei.RespBodyEnd(b)
	}
	ei.ReqStart(b)
	ei.ReqAddInfoType(b, info)
	ei.ReqAddInfo(b, off)
	b.Finish(ei.ReqEnd(b))
	if err := WriteFrame(c, TypeExtraInfo, b.FinishedBytes()); err != nil {
		return nil, err
	}
	ty, p, err := ReadFrame(c)
	if err != nil {
		return nil, err
	}
	if ty != TypeExtraInfo {
		return nil, errors.New("fake: answer is not ExtraInfo")
	}
	return ei.GetRootAsResp(p, 0).ResultBytes(), nil
}
