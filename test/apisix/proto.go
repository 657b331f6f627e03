package apisix

import (
	"fmt"

	A6 "github.com/api7/ext-plugin-proto/go/A6"
	A6Err "github.com/api7/ext-plugin-proto/go/A6/Err"
	ei "github.com/api7/ext-plugin-proto/go/A6/ExtraInfo"
	hrc "github.com/api7/ext-plugin-proto/go/A6/HTTPReqCall"
	pc "github.com/api7/ext-plugin-proto/go/A6/PrepareConf"
	flatbuffers "github.com/google/flatbuffers/go"
)

// textEntry is one A6.TextEntry. A nil Value is an entry without value: in a
// request arg it is a bare flag ("?debug"), in a Rewrite it deletes.
type textEntry struct {
	Name  string
	Value *string
}

func strp(s string) *string { return &s }

func buildTextEntries(b *flatbuffers.Builder, entries []textEntry,
	startVector func(*flatbuffers.Builder, int) flatbuffers.UOffsetT) flatbuffers.UOffsetT {
	offs := make([]flatbuffers.UOffsetT, len(entries))
	for i, e := range entries {
		name := b.CreateString(e.Name)
		var value flatbuffers.UOffsetT
		if e.Value != nil {
			value = b.CreateString(*e.Value)
		}
		A6.TextEntryStart(b)
		A6.TextEntryAddName(b, name)
		if e.Value != nil {
			A6.TextEntryAddValue(b, value)
		}
		offs[i] = A6.TextEntryEnd(b)
	}
	startVector(b, len(offs))
	for i := len(offs) - 1; i >= 0; i-- {
		b.PrependUOffsetT(offs[i])
	}
	return b.EndVector(len(offs))
}

// encodePrepareConf builds a PrepareConf request. A nil conf leaves the conf
// vector out, as init.lua does when the plugin conf has no "conf" list.
func encodePrepareConf(key string, conf []PluginConf) []byte {
	b := flatbuffers.NewBuilder(256)
	k := b.CreateString(key)
	var vec flatbuffers.UOffsetT
	if conf != nil {
		entries := make([]textEntry, len(conf))
		for i, c := range conf {
			entries[i] = textEntry{Name: c.Name, Value: strp(c.Value)}
		}
		vec = buildTextEntries(b, entries, pc.ReqStartConfVector)
	}
	pc.ReqStart(b)
	pc.ReqAddKey(b, k)
	if conf != nil {
		pc.ReqAddConf(b, vec)
	}
	b.Finish(pc.ReqEnd(b))
	return b.FinishedBytes()
}

func decodePrepareConfResp(buf []byte) (token uint32, err error) {
	defer recoverDecode("PrepareConf response", &err)
	return pc.GetRootAsResp(buf, 0).ConfToken(), nil
}

// httpReqCall is the content of one HTTPReqCall request.
type httpReqCall struct {
	ID        uint32
	ConfToken uint32
	SrcIP     []byte
	Method    A6.Method
	Path      string
	Args      []textEntry
	Headers   []textEntry
}

func encodeHTTPReqCall(c *httpReqCall) []byte {
	b := flatbuffers.NewBuilder(1024)
	path := b.CreateString(c.Path)
	srcIP := b.CreateByteVector(c.SrcIP)
	args := buildTextEntries(b, c.Args, hrc.ReqStartArgsVector)
	hdrs := buildTextEntries(b, c.Headers, hrc.ReqStartHeadersVector)
	hrc.ReqStart(b)
	hrc.ReqAddId(b, c.ID)
	hrc.ReqAddConfToken(b, c.ConfToken)
	hrc.ReqAddSrcIp(b, srcIP)
	hrc.ReqAddPath(b, path)
	hrc.ReqAddArgs(b, args)
	hrc.ReqAddHeaders(b, hdrs)
	hrc.ReqAddMethod(b, c.Method)
	b.Finish(hrc.ReqEnd(b))
	return b.FinishedBytes()
}

// action is a decoded HTTPReqCall answer.
type action struct {
	Type hrc.Action

	// Stop
	Status     uint16
	StopHeader []textEntry
	Body       []byte

	// Rewrite
	Path        *string // nil: not rewritten
	Headers     []textEntry
	Args        []textEntry
	RespHeaders []textEntry
}

func readEntries(n int, get func(*A6.TextEntry, int) bool) []textEntry {
	out := make([]textEntry, 0, n)
	for i := 0; i < n; i++ {
		var te A6.TextEntry
		if !get(&te, i) {
			continue
		}
		e := textEntry{Name: string(te.Name())}
		if v := te.Value(); v != nil {
			e.Value = strp(string(v))
		}
		out = append(out, e)
	}
	return out
}

func decodeHTTPReqCallResp(buf []byte) (a *action, err error) {
	defer recoverDecode("HTTPReqCall response", &err)
	resp := hrc.GetRootAsResp(buf, 0)
	a = &action{Type: resp.ActionType()}
	var tab flatbuffers.Table
	switch a.Type {
	case hrc.ActionStop:
		if !resp.Action(&tab) {
			return a, nil
		}
		var s hrc.Stop
		s.Init(tab.Bytes, tab.Pos)
		a.Status = s.Status()
		a.StopHeader = readEntries(s.HeadersLength(), s.Headers)
		if s.BodyLength() > 0 {
			a.Body = append([]byte(nil), s.BodyBytes()...)
		}
	case hrc.ActionRewrite:
		if !resp.Action(&tab) {
			return a, nil
		}
		var r hrc.Rewrite
		r.Init(tab.Bytes, tab.Pos)
		if p := r.Path(); p != nil {
			a.Path = strp(string(p))
		}
		a.Headers = readEntries(r.HeadersLength(), r.Headers)
		a.Args = readEntries(r.ArgsLength(), r.Args)
		a.RespHeaders = readEntries(r.RespHeadersLength(), r.RespHeaders)
	}
	return a, nil
}

// extraInfoReq is a decoded ExtraInfo request from the runner.
type extraInfoReq struct {
	Type ei.Info
	Var  string
}

func decodeExtraInfoReq(buf []byte) (r extraInfoReq, err error) {
	defer recoverDecode("ExtraInfo request", &err)
	req := ei.GetRootAsReq(buf, 0)
	r.Type = req.InfoType()
	if r.Type == ei.InfoVar {
		var tab flatbuffers.Table
		if req.Info(&tab) {
			var v ei.Var
			v.Init(tab.Bytes, tab.Pos)
			r.Var = string(v.Name())
		}
	}
	return r, nil
}

// encodeExtraInfoResp builds an ExtraInfo answer; a nil result leaves the
// result vector out (init.lua: "if res then ... AddResult").
func encodeExtraInfoResp(result []byte) []byte {
	b := flatbuffers.NewBuilder(64 + len(result))
	var vec flatbuffers.UOffsetT
	if result != nil {
		vec = b.CreateByteVector(result)
	}
	ei.RespStart(b)
	if result != nil {
		ei.RespAddResult(b, vec)
	}
	b.Finish(ei.RespEnd(b))
	return b.FinishedBytes()
}

// rpcError is an error frame (type 0) from the runner.
type rpcError struct{ Code A6Err.Code }

// Error gives the message init.lua's err_to_msg gives.
func (e *rpcError) Error() string {
	switch e.Code {
	case A6Err.CodeBAD_REQUEST:
		return "bad request"
	case A6Err.CodeSERVICE_UNAVAILABLE:
		return "service unavailable"
	case A6Err.CodeCONF_TOKEN_NOT_FOUND:
		return "conf token not found"
	}
	return fmt.Sprintf("unknown err %d", e.Code)
}

// Is matches another rpcError with the same code.
func (e *rpcError) Is(target error) bool {
	t, ok := target.(*rpcError)
	return ok && t.Code == e.Code
}

func decodeError(buf []byte) (err error) {
	defer recoverDecode("error frame", &err)
	return &rpcError{Code: A6Err.GetRootAsResp(buf, 0).Code()}
}

// recoverDecode turns a flatbuffers panic on a malformed buffer into an error.
func recoverDecode(what string, err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("apisix: malformed %s: %v", what, r)
	}
}
