package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"time"

	A6 "github.com/api7/ext-plugin-proto/go/A6"
	hrc "github.com/api7/ext-plugin-proto/go/A6/HTTPReqCall"
	pc "github.com/api7/ext-plugin-proto/go/A6/PrepareConf"
	flatbuffers "github.com/google/flatbuffers/go"
)

// The lean client: everything a call needs is encoded before the clock starts,
// and an answer is decoded only as far as its check needs. test/apisix plays
// APISIX faithfully (ExtraInfo, Stop/Rewrite applied to a stand-in upstream);
// its per-call work would be part of the figures, so the timed loop lives here.

const (
	typeError       byte = 0
	typePrepareConf byte = 1
	typeHTTPReqCall byte = 2
)

type header struct{ name, value string }

type pluginConf struct{ name, value string }

// frame prepends the 4-byte frame header (type, 3-byte big-endian length).
func frame(ty byte, payload []byte) []byte {
	out := make([]byte, 4+len(payload))
	out[0] = ty
	out[1], out[2], out[3] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
	copy(out[4:], payload)
	return out
}

func textEntries(b *flatbuffers.Builder, entries []header, start func(*flatbuffers.Builder, int) flatbuffers.UOffsetT) flatbuffers.UOffsetT {
	offs := make([]flatbuffers.UOffsetT, len(entries))
	for i, e := range entries {
		name, value := b.CreateString(e.name), b.CreateString(e.value)
		A6.TextEntryStart(b)
		A6.TextEntryAddName(b, name)
		A6.TextEntryAddValue(b, value)
		offs[i] = A6.TextEntryEnd(b)
	}
	start(b, len(offs))
	for i := len(offs) - 1; i >= 0; i-- {
		b.PrependUOffsetT(offs[i])
	}
	return b.EndVector(len(offs))
}

// prepareConf sends one PrepareConf with APISIX's key shape and returns the
// conf token.
func prepareConf(socket, key string, confs []pluginConf) (uint32, error) {
	c, err := net.DialTimeout("unix", socket, time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	b := flatbuffers.NewBuilder(512)
	k := b.CreateString(key)
	hs := make([]header, len(confs))
	for i, cf := range confs {
		hs[i] = header{cf.name, cf.value}
	}
	vec := textEntries(b, hs, pc.ReqStartConfVector)
	pc.ReqStart(b)
	pc.ReqAddKey(b, k)
	pc.ReqAddConf(b, vec)
	b.Finish(pc.ReqEnd(b))
	if _, err := c.Write(frame(typePrepareConf, b.FinishedBytes())); err != nil {
		return 0, err
	}
	ty, payload, err := readFrame(c, nil)
	if err != nil {
		return 0, err
	}
	if ty != typePrepareConf {
		return 0, fmt.Errorf("PrepareConf answered with frame type %d", ty)
	}
	return pc.GetRootAsResp(payload, 0).ConfToken(), nil
}

// callFrame is one complete HTTPReqCall frame, as APISIX's access phase sends
// it after openid-connect.
func callFrame(id, token uint32, path string, headers []header) []byte {
	b := flatbuffers.NewBuilder(4096)
	p := b.CreateString(path)
	ip := b.CreateByteVector([]byte{192, 0, 2, 10})
	args := textEntries(b, nil, hrc.ReqStartArgsVector)
	hdrs := textEntries(b, headers, hrc.ReqStartHeadersVector)
	hrc.ReqStart(b)
	hrc.ReqAddId(b, id)
	hrc.ReqAddConfToken(b, token)
	hrc.ReqAddSrcIp(b, ip)
	hrc.ReqAddPath(b, p)
	hrc.ReqAddArgs(b, args)
	hrc.ReqAddHeaders(b, hdrs)
	hrc.ReqAddMethod(b, A6.MethodGET)
	b.Finish(hrc.ReqEnd(b))
	return frame(typeHTTPReqCall, b.FinishedBytes())
}

// readFrame reads one frame into buf (grown when too small) and returns its
// type and payload.
func readFrame(r io.Reader, buf []byte) (byte, []byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := int(hdr[1])<<16 | int(hdr[2])<<8 | int(hdr[3])
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return 0, nil, err
	}
	return hdr[0], buf, nil
}

// expect is what every answer of a variant must be, and what a sampled answer
// must carry.
type expect struct {
	action    hrc.Action // ActionNONE for the no-op chain (nothing changed), else Rewrite
	assertion string     // header that must be present in a sampled answer; "" = none expected
	orgs      string     // substring X-User-Orgs must contain in a sampled answer; "" = not checked
	// fellThrough, when set, counts 401 account_unknown answers instead of
	// failing on them: in the sweep, whose users exist only in the seeded
	// cache, that answer means orgsync missed the cache (a Redis timeout)
	// and asked Keycloak.
	fellThrough *atomic.Int64
}

// checkAnswer checks the frame type and action of every answer; full is the
// sampled deep check of the identity headers.
func checkAnswer(ty byte, payload []byte, e *expect, sub string, full bool) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed answer: %v", r)
		}
	}()
	if e == nil { // the echo server's canned answer
		return nil
	}
	if ty != typeHTTPReqCall {
		return fmt.Errorf("answer frame type %d (want %d): %s", ty, typeHTTPReqCall, errorFrame(ty, payload))
	}
	resp := hrc.GetRootAsResp(payload, 0)
	if at := resp.ActionType(); at != e.action {
		if e.fellThrough != nil && at == hrc.ActionStop && strings.Contains(stopDetail(resp), "account_unknown") {
			e.fellThrough.Add(1)
			return nil
		}
		return fmt.Errorf("answer action %s, want %s%s", hrc.EnumNamesAction[at], hrc.EnumNamesAction[e.action], stopDetail(resp))
	}
	if !full || e.action != hrc.ActionRewrite {
		return nil
	}
	h := rewriteHeaders(resp)
	if got := h["x-user-id"]; got != sub {
		return fmt.Errorf("X-User-Id %q, want %q", got, sub)
	}
	if e.assertion != "" && h[strings.ToLower(e.assertion)] == "" {
		return fmt.Errorf("no %s header", e.assertion)
	}
	if e.orgs != "" && !strings.Contains(h["x-user-orgs"], e.orgs) {
		return fmt.Errorf("X-User-Orgs %q does not name %q", h["x-user-orgs"], e.orgs)
	}
	return nil
}

// rewriteHeaders decodes the header changes of a Rewrite answer, names lower-cased.
func rewriteHeaders(resp *hrc.Resp) map[string]string {
	out := map[string]string{}
	var tab flatbuffers.Table
	if resp.ActionType() != hrc.ActionRewrite || !resp.Action(&tab) {
		return out
	}
	var rw hrc.Rewrite
	rw.Init(tab.Bytes, tab.Pos)
	var te A6.TextEntry
	for i := 0; i < rw.HeadersLength(); i++ {
		if rw.Headers(&te, i) {
			out[strings.ToLower(string(te.Name()))] = string(te.Value())
		}
	}
	return out
}

func stopDetail(resp *hrc.Resp) string {
	var tab flatbuffers.Table
	if resp.ActionType() != hrc.ActionStop || !resp.Action(&tab) {
		return ""
	}
	var s hrc.Stop
	s.Init(tab.Bytes, tab.Pos)
	return fmt.Sprintf(" (status %d: %s)", s.Status(), bytes.TrimSpace(s.BodyBytes()))
}

func errorFrame(ty byte, payload []byte) string {
	if ty == typeError && len(payload) >= 4 {
		return fmt.Sprintf("runner error frame, %d bytes", len(payload))
	}
	return ""
}
