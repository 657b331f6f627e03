package main

import (
	"strings"
	"sync/atomic"
	"testing"

	hrc "github.com/api7/ext-plugin-proto/go/A6/HTTPReqCall"
	flatbuffers "github.com/google/flatbuffers/go"
)

func rewriteAnswer(headers []header) []byte {
	b := flatbuffers.NewBuilder(256)
	hv := textEntries(b, headers, hrc.RewriteStartHeadersVector)
	hrc.RewriteStart(b)
	hrc.RewriteAddHeaders(b, hv)
	rw := hrc.RewriteEnd(b)
	hrc.RespStart(b)
	hrc.RespAddActionType(b, hrc.ActionRewrite)
	hrc.RespAddAction(b, rw)
	b.Finish(hrc.RespEnd(b))
	return b.FinishedBytes()
}

func stopAnswer(status uint16, body string) []byte {
	b := flatbuffers.NewBuilder(256)
	bv := b.CreateByteVector([]byte(body))
	hrc.StopStart(b)
	hrc.StopAddStatus(b, status)
	hrc.StopAddBody(b, bv)
	st := hrc.StopEnd(b)
	hrc.RespStart(b)
	hrc.RespAddActionType(b, hrc.ActionStop)
	hrc.RespAddAction(b, st)
	b.Finish(hrc.RespEnd(b))
	return b.FinishedBytes()
}

// Every answer's action is checked; a sampled one's identity headers too.
func TestCheckAnswer(t *testing.T) {
	e := &expect{action: hrc.ActionRewrite, assertion: "X-Identity-Assertion", orgs: "acme"}
	good := rewriteAnswer([]header{{"X-User-Id", "u1"}, {"X-Identity-Assertion", "jws"}, {"X-User-Orgs", "acme,globex"}})
	if err := checkAnswer(typeHTTPReqCall, good, e, "u1", true); err != nil {
		t.Fatalf("good answer refused: %v", err)
	}
	for name, c := range map[string]struct {
		ty      byte
		payload []byte
		sub     string
		want    string
	}{
		"wrong user":   {typeHTTPReqCall, good, "u2", "X-User-Id"},
		"no assertion": {typeHTTPReqCall, rewriteAnswer([]header{{"X-User-Id", "u1"}, {"X-User-Orgs", "acme"}}), "u1", "X-Identity-Assertion"},
		"stale orgs":   {typeHTTPReqCall, rewriteAnswer([]header{{"X-User-Id", "u1"}, {"X-Identity-Assertion", "j"}, {"X-User-Orgs", "globex"}}), "u1", "X-User-Orgs"},
		"stop":         {typeHTTPReqCall, stopAnswer(401, `{"reason":"token_expired"}`), "u1", "token_expired"},
		"error frame":  {typeError, []byte{0, 0, 0, 0}, "u1", "frame type 0"},
		"garbage":      {typeHTTPReqCall, []byte{1, 2}, "u1", "malformed"},
	} {
		err := checkAnswer(c.ty, c.payload, e, c.sub, true)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error naming %q", name, err, c.want)
		}
	}
	// Unsampled answers: action only.
	if err := checkAnswer(typeHTTPReqCall, good, e, "someone else", false); err != nil {
		t.Fatalf("unsampled answer: %v", err)
	}
	// No-op chain: the runner answers with no action.
	b := flatbuffers.NewBuilder(64)
	hrc.RespStart(b)
	b.Finish(hrc.RespEnd(b))
	if err := checkAnswer(typeHTTPReqCall, b.FinishedBytes(), &expect{action: hrc.ActionNONE}, "", true); err != nil {
		t.Fatalf("no-op answer: %v", err)
	}
	// The sweep counts cache misses that reached Keycloak instead of failing.
	var n atomic.Int64
	e.fellThrough = &n
	if err := checkAnswer(typeHTTPReqCall, stopAnswer(401, `{"reason":"account_unknown"}`), e, "u1", true); err != nil || n.Load() != 1 {
		t.Fatalf("fell-through answer: %v, counted %d", err, n.Load())
	}
}
