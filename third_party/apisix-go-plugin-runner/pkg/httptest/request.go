/*
 * Licensed to the Apache Software Foundation (ASF) under one or more
 * contributor license agreements.  See the NOTICE file distributed with
 * this work for additional information regarding copyright ownership.
 * The ASF licenses this file to You under the Apache License, Version 2.0
 * (the "License"); you may not use this file except in compliance with
 * the License.  You may obtain a copy of the License at
 *
 *     http://www.apache.org/licenses/LICENSE-2.0
 *
 * Unless required by applicable law or agreed to in writing, software
 * distributed under the License is distributed on an "AS IS" BASIS,
 * WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
 * See the License for the specific language governing permissions and
 * limitations under the License.
 */

// apisix-identity-runner patch: header views (PATCHES.md, patch 7). The whole
// file is the patch: plugin tests outside this module drive the runner's own
// pooled Request, the one the header views live in, without a socket.

package httptest

import (
	"net/http"

	"github.com/api7/ext-plugin-proto/go/A6"
	hrc "github.com/api7/ext-plugin-proto/go/A6/HTTPReqCall"
	flatbuffers "github.com/google/flatbuffers/go"

	inHTTP "github.com/apache/apisix-go-plugin-runner/internal/http"
	"github.com/apache/apisix-go-plugin-runner/internal/util"
	pkgHTTP "github.com/apache/apisix-go-plugin-runner/pkg/http"
)

// NewRequestFrame encodes an HTTPReqCall as APISIX sends it: a GET of path
// with the headers in the given order (names as sent, repeats kept).
func NewRequestFrame(id, confToken uint32, path string, headers [][2]string) []byte {
	b := flatbuffers.NewBuilder(1024)
	p := b.CreateString(path)
	entries := make([]flatbuffers.UOffsetT, len(headers))
	for i, h := range headers {
		name, value := b.CreateString(h[0]), b.CreateString(h[1])
		A6.TextEntryStart(b)
		A6.TextEntryAddName(b, name)
		A6.TextEntryAddValue(b, value)
		entries[i] = A6.TextEntryEnd(b)
	}
	hrc.ReqStartHeadersVector(b, len(entries))
	for i := len(entries) - 1; i >= 0; i-- {
		b.PrependUOffsetT(entries[i])
	}
	vec := b.EndVector(len(entries))
	hrc.ReqStart(b)
	hrc.ReqAddId(b, id)
	hrc.ReqAddConfToken(b, confToken)
	hrc.ReqAddMethod(b, A6.MethodGET)
	hrc.ReqAddPath(b, p)
	hrc.ReqAddHeaders(b, vec)
	b.Finish(hrc.ReqEnd(b))
	return b.FinishedBytes()
}

// Filter is a plugin's RequestFilter with its conf bound.
type Filter func(w http.ResponseWriter, r pkgHTTP.Request)

// ServeFrame does what the runner does with an HTTPReqCall frame: a Request
// from the pool over frame, the filters in order until one answers, the
// answer built (a Stop, or the Rewrite of the changes), and the Request
// reset and put back. It appends the answer's bytes to dst and returns it.
// frame is read in place, as the server reads the buffer of one frame.
func ServeFrame(dst, frame []byte, filters ...Filter) []byte {
	req := inHTTP.CreateRequest(frame)
	resp := inHTTP.CreateReqResponse()
	for _, f := range filters {
		f(resp, req)
		if resp.HasChange() {
			break
		}
	}
	b := util.GetBuilder()
	if !resp.FetchChanges(req.ID(), b) && !req.FetchChanges(req.ID(), b) {
		hrc.RespStart(b)
		hrc.RespAddId(b, req.ID())
		b.Finish(hrc.RespEnd(b))
	}
	dst = append(dst, b.FinishedBytes()...)
	util.PutBuilder(b)
	inHTTP.ReuseReqResponse(resp)
	inHTTP.ReuseRequest(req)
	return dst
}

// PoisonViews makes every Request, when it ends, overwrite its frame and
// the buffers its header views point into, so that a test sees a view a
// plugin kept past its request change instead of staying valid by chance.
// With it on, give each ServeFrame call a frame of its own.
func PoisonViews(on bool) {
	inHTTP.SetPoisonViews(on)
}

// HeaderChange is one header entry of a Rewrite answer.
type HeaderChange struct {
	Name, Value string
	// Delete: the entry removes the header (it has no value).
	Delete bool
}

// Answer is an HTTPReqCall answer, decoded.
type Answer struct {
	// Stop: a plugin answered the client with Status.
	Stop   bool
	Status int
	// Rewrite: the request goes on with Headers changed.
	Rewrite bool
	Headers []HeaderChange
}

// ParseAnswer decodes what ServeFrame returned.
func ParseAnswer(b []byte) Answer {
	res := hrc.GetRootAsResp(b, 0)
	var a Answer
	tab := &flatbuffers.Table{}
	if !res.Action(tab) {
		return a
	}
	switch res.ActionType() {
	case hrc.ActionStop:
		stop := &hrc.Stop{}
		stop.Init(tab.Bytes, tab.Pos)
		a.Stop, a.Status = true, int(stop.Status())
	case hrc.ActionRewrite:
		rw := &hrc.Rewrite{}
		rw.Init(tab.Bytes, tab.Pos)
		a.Rewrite = true
		e := &A6.TextEntry{}
		for i := 0; i < rw.HeadersLength(); i++ {
			if rw.Headers(e, i) {
				a.Headers = append(a.Headers, HeaderChange{Name: string(e.Name()), Value: string(e.Value()), Delete: e.Value() == nil})
			}
		}
	}
	return a
}
