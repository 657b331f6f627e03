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

// apisix-identity-runner patch 9: tests of writeHeaderRewrite.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand"
	"strings"
	"testing"

	"github.com/api7/ext-plugin-proto/go/A6"
	hrc "github.com/api7/ext-plugin-proto/go/A6/HTTPReqCall"
	flatbuffers "github.com/google/flatbuffers/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apache/apisix-go-plugin-runner/internal/util"
)

// builderRewrite is the answer the generic builder writes for the same
// recorded changes: FetchChanges' own path for a request that also
// changes its path, without the path.
func builderRewrite(r *Request, id uint32) []byte {
	b := flatbuffers.NewBuilder(256)
	hdrs := r.fetchEdits(b)
	hrc.RewriteStartHeadersVector(b, len(hdrs))
	for i := len(hdrs) - 1; i >= 0; i-- {
		b.PrependUOffsetT(hdrs[i])
	}
	vec := b.EndVector(len(hdrs))
	hrc.RewriteStart(b)
	hrc.RewriteAddHeaders(b, vec)
	rw := hrc.RewriteEnd(b)
	hrc.RespStart(b)
	hrc.RespAddId(b, id)
	hrc.RespAddActionType(b, hrc.ActionRewrite)
	hrc.RespAddAction(b, rw)
	b.Finish(hrc.RespEnd(b))
	return b.FinishedBytes()
}

// decodedAnswer is everything APISIX reads of an answer, in order.
func decodedAnswer(t *testing.T, buf []byte) string {
	resp := hrc.GetRootAsResp(buf, 0)
	var tab flatbuffers.Table
	require.True(t, resp.Action(&tab))
	var rw hrc.Rewrite
	rw.Init(tab.Bytes, tab.Pos)
	var out strings.Builder
	fmt.Fprintf(&out, "id=%d action=%d path=%q args=%d resp=%d;", resp.Id(), resp.ActionType(), rw.Path(),
		rw.ArgsLength(), rw.RespHeadersLength())
	var e A6.TextEntry
	for i := 0; i < rw.HeadersLength(); i++ {
		require.True(t, rw.Headers(&e, i))
		fmt.Fprintf(&out, " %q=%q/%v", e.Name(), e.Value(), e.Value() == nil)
	}
	return out.String()
}

// TestHeaderRewriteReadsAsTheBuildersWrites: for random header sets and
// changes, the hand-written answer reads, through the generated accessors,
// exactly as the generic builder's: the same id, action, entries in the
// same order, deletions without a value.
func TestHeaderRewriteReadsAsTheBuildersWrites(t *testing.T) {
	rng := rand.New(rand.NewSource(9))
	ids := []uint32{0, 1, 7, 1 << 31, ^uint32(0)}
	for i := 0; i < 3000; i++ {
		in, ops := randomHeaders(rng), randomOps(rng)
		if rng.Intn(5) == 0 {
			// Values of every length modulo 4, and long ones.
			ops = append(ops, headerOp{key: "X-Long", value: strings.Repeat("v", rng.Intn(5000))})
		}
		id := ids[rng.Intn(len(ids))]
		buf := buildReq(reqOpt{headers: in})

		ref := CreateRequest(buf)
		apply(ref.Header(), ops)
		want := decodedAnswer(t, builderRewrite(ref, id))
		ReuseRequest(ref)

		r := CreateRequest(buf)
		apply(r.Header(), ops)
		b := util.GetBuilder()
		require.True(t, r.FetchChanges(id, b))
		got := b.FinishedBytes()
		assert.Equal(t, want, decodedAnswer(t, got), "case %d: %v %v", i, in, ops)
		checkLayout(t, got)
		util.PutBuilder(b)
		ReuseRequest(r)
	}
}

// checkLayout checks what a reader that is not Go's may rely on: the
// buffer's length and every table, vector and string at a multiple of 4,
// every reference inside the buffer.
func checkLayout(t *testing.T, buf []byte) {
	le := binary.LittleEndian
	require.Zero(t, len(buf)%4, "length")
	inside := func(at uint32, n int) {
		require.Zero(t, at%4, "misaligned at %d", at)
		require.LessOrEqual(t, int(at)+n, len(buf), "reference past the end: %d", at)
	}
	ref := func(at uint32) uint32 { inside(at, 4); return at + le.Uint32(buf[at:]) }
	resp := ref(0)
	inside(resp, 16)
	vt := uint32(int32(resp) - int32(le.Uint32(buf[resp:])))
	require.Zero(t, vt%2)
	rewrite := ref(resp + uint32(le.Uint16(buf[vt+8:])))
	vec := ref(rewrite + 4)
	n := le.Uint32(buf[vec:])
	for i := uint32(0); i < n; i++ {
		entry := ref(vec + 4 + 4*i)
		inside(entry, 8)
		name := ref(entry + 4)
		inside(name, 4+int(le.Uint32(buf[name:]))+1)
		require.Zero(t, buf[name+4+le.Uint32(buf[name:])], "name not zero-terminated")
	}
}

// TestHeaderRewriteLeavesNothingOfTheAnswerBefore: the pooled block is
// rewritten entirely, padding included, so no byte of one request's answer
// reaches APISIX in another's.
func TestHeaderRewriteLeavesNothingOfTheAnswerBefore(t *testing.T) {
	buf := buildReq(reqOpt{headers: []pair{{"x-userinfo", "a"}, {"x-id-token", "t"}}})
	for _, ops := range [][]headerOp{
		{{key: "X-User-Id", value: "u"}, {key: "X-Id-Token", del: true}},
		{{key: "X-User-Orgs", value: "acme,globex"}},
		{{key: "X-Userinfo", value: "abc"}, {key: "X-Empty", value: ""}},
		nil,
	} {
		r := CreateRequest(buf)
		// What an earlier, bigger answer left in the block.
		r.answer = bytes.Repeat([]byte{0xEE}, 4096)[:0]
		apply(r.Header(), ops)
		_ = r.Header().Get("X-Userinfo")
		b := util.GetBuilder()
		require.True(t, r.FetchChanges(3, b))
		assert.NotContains(t, string(b.FinishedBytes()), "\xee", "%v", ops)
		util.PutBuilder(b)
		ReuseRequest(r)
	}
}

// TestLargeHeaderRewriteIsNotKept: an answer past maxKeptAnswer is written
// and sent, and its block goes with the request.
func TestLargeHeaderRewriteIsNotKept(t *testing.T) {
	r := CreateRequest(buildReq(reqOpt{}))
	big := strings.Repeat("x", maxKeptAnswer+1)
	r.Header().Set("X-Big", big)
	b := util.GetBuilder()
	defer util.PutBuilder(b)
	require.True(t, r.FetchChanges(5, b))
	assert.Equal(t, map[string][]string{"X-Big": {big}}, rewriteHeaders(t, b))
	assert.Zero(t, cap(r.answer))
	ReuseRequest(r)
}

// TestPathAndHeadersTakeTheBuilder: an answer that also rewrites the path
// is the builder's, with the recorded header changes in it.
func TestPathAndHeadersTakeTheBuilder(t *testing.T) {
	r := CreateRequest(buildReq(reqOpt{headers: []pair{{"x-id-token", "t"}}}))
	r.SetPath([]byte("/elsewhere"))
	r.Header().Set("X-User-Id", "u")
	r.Header().Del("X-Id-Token")
	b := util.GetBuilder()
	defer util.PutBuilder(b)
	require.True(t, r.FetchChanges(5, b))
	assert.Equal(t, fmt.Sprintf(`id=5 action=%d path="/elsewhere" args=0 resp=0; "X-User-Id"="u"/false "X-Id-Token"=""/true`, hrc.ActionRewrite),
		decodedAnswer(t, b.FinishedBytes()))
	ReuseRequest(r)
}
