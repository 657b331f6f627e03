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

package http

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/api7/ext-plugin-proto/go/A6"
	ei "github.com/api7/ext-plugin-proto/go/A6/ExtraInfo"
	hrc "github.com/api7/ext-plugin-proto/go/A6/HTTPReqCall"
	flatbuffers "github.com/google/flatbuffers/go"

	"github.com/apache/apisix-go-plugin-runner/internal/util"
	"github.com/apache/apisix-go-plugin-runner/pkg/common"
	pkgHTTP "github.com/apache/apisix-go-plugin-runner/pkg/http"
)

type Request struct {
	// the root of the flatbuffers HTTPReqCall Request msg
	r    *hrc.Req
	root hrc.Req

	conn            net.Conn
	extraInfoHeader []byte

	path []byte

	hdr    *Header
	rawHdr http.Header

	// apisix-identity-runner patch: header views (header_view.go). hdr and
	// rawHdr are built only when a plugin calls View(); until then
	// Header() is hdrView, which reads the frame and records changes in
	// edits.
	hdrView reqHeader
	hdrUsed bool
	edits   []headerEdit
	changes []flatbuffers.UOffsetT
	answer  []byte // apisix-identity-runner patch 9: writeHeaderRewrite's block
	entries []frameHeader
	folds   uint64 // apisix-identity-runner patch 7: foldBit of every entry's fold
	canon   []byte
	frame   []byte // the frame the entries are places in
	indexed bool
	keyed   bool

	args    url.Values
	rawArgs url.Values

	vars map[string][]byte
	body []byte

	ctx    context.Context
	cancel context.CancelFunc

	respHdr http.Header
}

func (r *Request) ConfToken() uint32 {
	return r.r.ConfToken()
}

func (r *Request) ID() uint32 {
	return r.r.Id()
}

func (r *Request) SrcIP() net.IP {
	return r.r.SrcIpBytes()
}

func (r *Request) Method() string {
	return r.r.Method().String()
}

func (r *Request) Path() []byte {
	if r.path == nil {
		return r.r.Path()
	}
	return r.path
}

func (r *Request) SetPath(path []byte) {
	r.path = path
}

func (r *Request) Header() pkgHTTP.Header {
	// apisix-identity-runner patch: header views. The maps are built when
	// a plugin calls View() (header_view.go).
	r.hdrUsed = true
	r.hdrView.r = r
	return &r.hdrView
}

// buildHeader builds the maps Header() built in v0.5.0.
func (r *Request) buildHeader() {
	// apisix-identity-runner patch: allocations per request. The same
	// two maps as v0.5.0's Add loop and Clone (canonical names, values in
	// order, each value list capacity-capped so an append copies), built
	// in one pass: maps sized up front, the value lists of both maps
	// cut from one array, names APISIX usually sends canonicalised
	// without a temporary string. 70 allocations down to 34 per request for
	// the 14 headers of a logged-in request (bench_test.go).
	size := r.r.HeadersLength()
	// Room for the headers plugins add (identity plugins add about
	// six), so that Set does not grow the map.
	hh := make(http.Header, size+8)
	raw := make(http.Header, size)
	vals := make([]string, 2*size)
	obj := A6.TextEntry{}
	for i := 0; i < size; i++ {
		if !r.r.Headers(&obj, i) {
			continue
		}
		key, ok := knownHeaderKeys[string(obj.Name())]
		if !ok {
			key = textproto.CanonicalMIMEHeaderKey(string(obj.Name()))
		}
		v := string(obj.Value())
		if _, seen := hh[key]; seen {
			hh[key] = append(hh[key], v)
			raw[key] = append(raw[key], v)
			continue
		}
		vals[2*i], vals[2*i+1] = v, v
		hh[key] = vals[2*i : 2*i+1 : 2*i+1]
		raw[key] = vals[2*i+1 : 2*i+2 : 2*i+2]
	}
	r.hdr = &Header{Header: hh}
	r.rawHdr = raw
}

// knownHeaderKeys maps the lower-case names APISIX sends for common headers,
// and the identity headers of an openid-connect route, to their canonical
// form, so that Header() finds the key without allocating a string for the
// name (a map index by string(bytes) does not allocate). Names not listed
// go through textproto.CanonicalMIMEHeaderKey as before.
// (apisix-identity-runner patch: allocations per request.)
var knownHeaderKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"Accept", "Accept-Encoding", "Accept-Language", "Authorization", "Cache-Control", "Connection",
		"Content-Length", "Content-Type", "Cookie", "Host", "Origin", "Pragma", "Referer", "User-Agent",
		"Sec-Fetch-Dest", "Sec-Fetch-Mode", "Sec-Fetch-Site", "Sec-Fetch-User", "Upgrade-Insecure-Requests",
		"Transfer-Encoding", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Port",
		"X-Forwarded-Proto", "X-Real-Ip", "X-Request-Id",
		"X-Userinfo", "X-Access-Token", "X-Id-Token", "X-Raw-Id-Token", "X-Refresh-Token", "X-Requested-With",
		"X-User-Id", "X-User-Email", "X-User-Orgs", "X-User-Orgs-Source", "X-Identity-Assertion",
	} {
		m[strings.ToLower(k)] = textproto.CanonicalMIMEHeaderKey(k)
	}
	return m
}()

func (r *Request) RespHeader() http.Header {
	if r.respHdr == nil {
		r.respHdr = http.Header{}
	}
	return r.respHdr
}

func cloneUrlValues(oldV url.Values) url.Values {
	nv := 0
	for _, vv := range oldV {
		nv += len(vv)
	}
	sv := make([]string, nv)
	newV := make(url.Values, len(oldV))
	for k, vv := range oldV {
		n := copy(sv, vv)
		newV[k] = sv[:n:n]
		sv = sv[n:]
	}
	return newV
}

func (r *Request) Args() url.Values {
	if r.args == nil {
		args := url.Values{}
		size := r.r.ArgsLength()
		obj := A6.TextEntry{}
		for i := 0; i < size; i++ {
			if r.r.Args(&obj, i) {
				args.Add(string(obj.Name()), string(obj.Value()))
			}
		}
		r.args = args
		r.rawArgs = cloneUrlValues(args)
	}
	return r.args
}

func (r *Request) Var(name string) ([]byte, error) {
	if r.vars == nil {
		r.vars = map[string][]byte{}
	}

	var v []byte
	var found bool

	if v, found = r.vars[name]; !found {
		var err error

		builder := util.GetBuilder()
		varName := builder.CreateString(name)
		ei.VarStart(builder)
		ei.VarAddName(builder, varName)
		varInfo := ei.VarEnd(builder)
		v, err = r.askExtraInfo(builder, ei.InfoVar, varInfo)
		util.PutBuilder(builder)

		if err != nil {
			return nil, err
		}

		r.vars[name] = v
	}
	return v, nil
}

func (r *Request) Body() ([]byte, error) {
	if len(r.body) > 0 {
		return r.body, nil
	}

	builder := util.GetBuilder()
	ei.ReqBodyStart(builder)
	bodyInfo := ei.ReqBodyEnd(builder)
	v, err := r.askExtraInfo(builder, ei.InfoReqBody, bodyInfo)
	if err != nil {
		return nil, err
	}

	r.body = v
	return v, nil
}

func (r *Request) Reset() {
	defer r.cancel()
	r.resetViews() // apisix-identity-runner patch: header views
	r.path = nil
	r.hdr = nil
	r.rawHdr = nil
	r.args = nil

	r.vars = nil
	r.body = nil
	r.conn = nil
	r.ctx = nil
	r.respHdr = nil
	// Keep the fields below
	// r.extraInfoHeader = nil
}

func (r *Request) FetchChanges(id uint32, builder *flatbuffers.Builder) bool {
	// apisix-identity-runner patch: header views. hdrUsed is "Header() was
	// called", which v0.5.0 read as r.hdr != nil.
	if r.path == nil && r.args == nil && r.respHdr == nil {
		if !r.hdrUsed {
			return false
		}
		if r.hdr == nil {
			// apisix-identity-runner patch 9: only recorded header
			// changes, the answer every identity plugin gives; see
			// writeHeaderRewrite.
			r.writeHeaderRewrite(id, builder)
			return true
		}
	}

	var path flatbuffers.UOffsetT
	if r.path != nil {
		path = builder.CreateByteString(r.path)
	}

	var hdrVec, respHdrVec flatbuffers.UOffsetT
	if r.hdrUsed && r.hdr == nil {
		// apisix-identity-runner patch: header views. The maps were never
		// built: the entries the map diff below would send, from the
		// recorded changes.
		hdrs := r.fetchEdits(builder)
		size := len(hdrs)
		hrc.RewriteStartHeadersVector(builder, size)
		for i := size - 1; i >= 0; i-- {
			builder.PrependUOffsetT(hdrs[i])
		}
		hdrVec = builder.EndVector(size)
	}
	if r.hdr != nil {
		hdrs := []flatbuffers.UOffsetT{}
		oldHdr := r.rawHdr
		newHdr := r.hdr.View()
		for n := range oldHdr {
			if _, ok := newHdr[n]; !ok {
				// deleted
				name := builder.CreateString(n)
				A6.TextEntryStart(builder)
				A6.TextEntryAddName(builder, name)
				te := A6.TextEntryEnd(builder)
				hdrs = append(hdrs, te)
			}
		}
		for n, v := range newHdr {
			// apisix-identity-runner patch: repeated header keeps its extra
			// values. v0.5.0 compared only the first values (raw[0] != v[0]),
			// so a header the client sent twice ("X-User-Orgs: acme",
			// "X-User-Orgs: globex") and a plugin Set to "acme" was left out
			// of the change set and both values reached the upstream. Compare
			// the whole lists. Sending one entry with the first value is
			// enough: APISIX applies each Rewrite header entry with
			// core.request.set_header (apisix/plugins/ext-plugin/init.lua, the
			// Rewrite branch of the RPC_HTTP_REQ_CALL handler), that is
			// ngx.req.set_header, which replaces every value of the header.
			if raw, ok := oldHdr[n]; !ok || !sameValues(raw, v) {
				name := builder.CreateString(n)
				if len(v) == 0 {
					// Emptied through View(): a deletion, where v0.5.0
					// indexed v[0] and panicked.
					A6.TextEntryStart(builder)
					A6.TextEntryAddName(builder, name)
					hdrs = append(hdrs, A6.TextEntryEnd(builder))
					continue
				}
				value := builder.CreateString(v[0])
				A6.TextEntryStart(builder)
				A6.TextEntryAddName(builder, name)
				A6.TextEntryAddValue(builder, value)
				te := A6.TextEntryEnd(builder)
				hdrs = append(hdrs, te)
			}
		}
		size := len(hdrs)
		hrc.RewriteStartHeadersVector(builder, size)
		for i := size - 1; i >= 0; i-- {
			te := hdrs[i]
			builder.PrependUOffsetT(te)
		}
		hdrVec = builder.EndVector(size)
	}

	if r.respHdr != nil {
		respHdrs := []flatbuffers.UOffsetT{}
		for n, arr := range r.respHdr {
			for _, v := range arr {
				name := builder.CreateString(n)
				value := builder.CreateString(v)
				A6.TextEntryStart(builder)
				A6.TextEntryAddName(builder, name)
				A6.TextEntryAddValue(builder, value)
				te := A6.TextEntryEnd(builder)
				respHdrs = append(respHdrs, te)
			}
		}
		size := len(respHdrs)
		hrc.RewriteStartRespHeadersVector(builder, size)
		for i := size - 1; i >= 0; i-- {
			te := respHdrs[i]
			builder.PrependUOffsetT(te)
		}
		respHdrVec = builder.EndVector(size)
	}

	var argsVec flatbuffers.UOffsetT
	if r.args != nil {
		args := []flatbuffers.UOffsetT{}
		oldArgs := r.rawArgs
		newArgs := r.args
		for n := range oldArgs {
			if _, ok := newArgs[n]; !ok {
				// deleted
				name := builder.CreateString(n)
				A6.TextEntryStart(builder)
				A6.TextEntryAddName(builder, name)
				te := A6.TextEntryEnd(builder)
				args = append(args, te)
			}
		}
		for n, v := range newArgs {
			if raw, ok := oldArgs[n]; !ok || !reflect.DeepEqual(raw, v) {
				// set / add
				for _, vv := range v {
					name := builder.CreateString(n)
					value := builder.CreateString(vv)
					A6.TextEntryStart(builder)
					A6.TextEntryAddName(builder, name)
					A6.TextEntryAddValue(builder, value)
					te := A6.TextEntryEnd(builder)
					args = append(args, te)
				}
			}
		}
		size := len(args)
		hrc.RewriteStartArgsVector(builder, size)
		for i := size - 1; i >= 0; i-- {
			te := args[i]
			builder.PrependUOffsetT(te)
		}
		argsVec = builder.EndVector(size)
	}

	hrc.RewriteStart(builder)
	if path > 0 {
		hrc.RewriteAddPath(builder, path)
	}
	if hdrVec > 0 {
		hrc.RewriteAddHeaders(builder, hdrVec)
	}
	if respHdrVec > 0 {
		hrc.RewriteAddRespHeaders(builder, respHdrVec)
	}
	if argsVec > 0 {
		hrc.RewriteAddArgs(builder, argsVec)
	}
	rewrite := hrc.RewriteEnd(builder)

	hrc.RespStart(builder)
	hrc.RespAddId(builder, id)
	hrc.RespAddActionType(builder, hrc.ActionRewrite)
	hrc.RespAddAction(builder, rewrite)
	res := hrc.RespEnd(builder)
	builder.Finish(res)

	return true
}

// sameValues reports whether a and b hold the same values in the same order.
// (apisix-identity-runner patch: repeated header keeps its extra values.)
func sameValues(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (r *Request) BindConn(c net.Conn) {
	r.conn = c
}

func (r *Request) Context() context.Context {
	if r.ctx != nil {
		return r.ctx
	}
	return context.Background()
}

// SetContext replaces what Context returns for the rest of this request, so
// a plugin can hand values to the plugins after it in the same chain
// (context.WithValue) with nothing process-wide. Derive ctx from Context() to
// keep the request's deadline. The request's own cancel func is still called
// when the request ends, and Reset drops ctx, so a pooled Request never
// carries one request's context into the next.
//
// apisix-identity-runner patch: per-request context slot (v0.5.0 has none).
func (r *Request) SetContext(ctx context.Context) {
	if ctx == nil {
		panic("apisix-go-plugin-runner: SetContext with a nil context")
	}
	r.ctx = ctx
}

func (r *Request) askExtraInfo(builder *flatbuffers.Builder,
	infoType ei.Info, info flatbuffers.UOffsetT) ([]byte, error) {

	ei.ReqStart(builder)
	ei.ReqAddInfoType(builder, infoType)
	ei.ReqAddInfo(builder, info)
	eiRes := ei.ReqEnd(builder)
	builder.Finish(eiRes)

	c := r.conn
	if len(r.extraInfoHeader) == 0 {
		r.extraInfoHeader = make([]byte, util.HeaderLen)
	}
	header := r.extraInfoHeader

	out := builder.FinishedBytes()
	size := len(out)
	binary.BigEndian.PutUint32(header, uint32(size))
	header[0] = util.RPCExtraInfo

	// apisix-identity-runner patch: frame injection through an ExtraInfo
	// answer (extra_info.go). Any failed write or read closes the connection.
	if _, err := c.Write(header); err != nil {
		closeOnError(c, fmt.Errorf("write: %w", err))
		return nil, common.ErrConnClosed
	}

	if _, err := c.Write(out); err != nil {
		closeOnError(c, fmt.Errorf("write: %w", err))
		return nil, common.ErrConnClosed
	}

	buf, err := readExtraInfoAnswer(c, header)
	if err != nil {
		closeOnError(c, err)
		return nil, common.ErrConnClosed
	}

	resp := ei.GetRootAsResp(buf, 0)
	res := resp.ResultBytes()
	return res, nil
}

var reqPool = sync.Pool{
	New: func() interface{} {
		return &Request{}
	},
}

func CreateRequest(buf []byte) *Request {
	req := reqPool.Get().(*Request)
	// apisix-identity-runner patch: header views. The root table is kept
	// in the pooled Request: hrc.GetRootAsReq allocates one per request.
	req.root.Init(buf, flatbuffers.GetUOffsetT(buf))
	req.r = &req.root
	// because apisix has an implicit 60s timeout, so set the timeout to 56 seconds(smaller than 60s)
	// so plugin writer can still break the execution with a custom response before the apisix implicit timeout.
	// apisix-identity-runner patch: the same deadline without a timer
	// until a plugin waits on it (request_context.go).
	ctx := newRequestContext(time.Now())
	req.ctx = ctx
	req.cancel = ctx.end
	return req
}

func ReuseRequest(r *Request) {
	r.Reset()
	reqPool.Put(r)
}
