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
// file is the patch.
//
// v0.5.0 copied every header value of the frame into a new string and built
// two maps as soon as a plugin called Header(), even to read one header: for
// a browser request after openid-connect (a 1.8 KB session cookie and three
// tokens) that was most of an identity plugin's cost. Now Header() answers
// Get from the frame and records Set and Del; the maps are built only when a
// plugin calls View(), with the recorded changes applied, so everything a
// plugin sees is what v0.5.0 showed. HeaderBytes and RangeHeaders read the
// frame without copying; FetchChanges diffs the recorded changes against the
// frame to send the same Rewrite entries the map diff sends.

package http

import (
	"encoding/binary"
	"net/http"
	"net/textproto"
	"sync/atomic"
	"unsafe"

	"github.com/api7/ext-plugin-proto/go/A6"
	flatbuffers "github.com/google/flatbuffers/go"
)

// headerEdit is the state a plugin gave one header before the maps were
// built: one entry per canonical key, the last Set or Del.
type headerEdit struct {
	key   string
	value string
	del   bool
	fold  uint32 // foldOf(key)
	// sent is markSentEdits' verdict: the Rewrite carries this edit.
	sent bool
}

// frameHeader is one header of the frame: name and value are places in
// the frame; key, a place in Request.canon, is the name as the map would key
// it, written only when RangeHeaders asks for keys (Request.keyed). Offsets,
// not slices: the index holds no pointer, so filling and clearing it costs
// no write barrier.
type frameHeader struct {
	name, value, key span
	// fold is foldOf the name: names with one canonical key have one fold,
	// so lookups compare names (keyIs) only where the folds agree.
	fold uint32
}

// foldOf is a fingerprint of a header name that letter case does not
// change: its length and three of its bytes in lower case. Any two names
// with the same canonical key differ at most in letter case, so they have
// the same fold; names that differ elsewhere mostly do not, and a lookup
// compares only those that agree. Three bytes, not a hash of the whole name:
// it is computed for every header of every request.
func foldOf(name []byte) uint32 {
	n := len(name)
	if n == 0 {
		return 0
	}
	return uint32(n)<<24 | uint32(lower(name[0]))<<16 | uint32(lower(name[n/2]))<<8 | uint32(lower(name[n-1]))
}

// foldBit is fold's bit in Request.folds.
func foldBit(fold uint32) uint64 { return 1 << ((fold * 0x9E3779B1) >> 26) }

// mayHold reports whether the indexed frame may have a header of this fold:
// false means it has none, and a lookup need not walk the headers.
func (r *Request) mayHold(fold uint32) bool { return r.folds&foldBit(fold) != 0 }

// foldOfString is foldOf a string (the module predates generics).
func foldOfString(name string) uint32 { return foldOf(stringBytes(name)) }

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// span is b[off:end] of a buffer, or nil when off < 0.
type span struct{ off, end int32 }

func (s span) of(b []byte) []byte {
	if s.off < 0 {
		return nil
	}
	return b[s.off:s.end:s.end]
}

// reqHeader is what Request.Header returns.
type reqHeader struct{ r *Request }

func (h *reqHeader) Get(key string) string {
	r := h.r
	if r.hdr != nil {
		return r.hdr.Get(key)
	}
	var buf [64]byte
	v, _ := r.headerValue(appendCanonicalKeyString(buf[:0], key))
	return string(v)
}

func (h *reqHeader) Set(key, value string) { h.SetCanonical(canonicalKey(key), value) }

func (h *reqHeader) Del(key string) { h.DelCanonical(canonicalKey(key)) }

// SetCanonical is Set for a key the caller has made canonical
// (textproto.CanonicalMIMEHeaderKey(key) == key, as for a constant or a
// configured name canonicalised once): the key is recorded as it is, not
// checked again. Reached through an interface assertion on Header(), as
// Request.SetContext is. A key that is not canonical must go through Set: it
// would be recorded apart from the same header's other spellings.
//
// apisix-identity-runner patch 7: an identity plugin writes a dozen headers
// per request, and checking each key's letter case was a tenth of its cost.
func (h *reqHeader) SetCanonical(key, value string) {
	r := h.r
	if r.hdr != nil {
		r.hdr.Set(key, value)
		return
	}
	r.edit(headerEdit{key: key, value: value, fold: foldOfString(key)})
}

// DelCanonical is Del for a canonical key; see SetCanonical.
func (h *reqHeader) DelCanonical(key string) {
	r := h.r
	if r.hdr != nil {
		r.hdr.Del(key)
		return
	}
	r.edit(headerEdit{key: key, del: true, fold: foldOfString(key)})
}

// View builds the maps (once per request); from then on Get, Set and Del
// work on the map, as in v0.5.0, and so do HeaderBytes and RangeHeaders.
func (h *reqHeader) View() http.Header {
	return h.r.materialize().View()
}

// canonicalKey is textproto.CanonicalMIMEHeaderKey(key) without a new
// string when key is canonical already (the constants plugins pass) or one
// of knownHeaderKeys in any letter case ("X-ID-Token"): plugins set and
// delete those on every request.
func canonicalKey(key string) string {
	if isCanonical(key) {
		return key
	}
	var buf [64]byte
	if len(key) <= len(buf) {
		b := buf[:len(key)]
		for i := 0; i < len(key); i++ {
			c := key[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			b[i] = c
		}
		if k, ok := knownHeaderKeys[string(b)]; ok {
			return k
		}
	}
	return textproto.CanonicalMIMEHeaderKey(key)
}

// isCanonical reports whether textproto.CanonicalMIMEHeaderKey(key) is key.
// Plain comparisons, not canonByte: it runs for every Set and Del.
func isCanonical(key string) bool {
	upper := true
	for i := 0; i < len(key); i++ {
		c := key[i]
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			// Not canonical, unless a byte that is not a token byte
			// makes CanonicalMIMEHeaderKey leave key as it is.
			return !isTokenString(key[i+1:])
		}
		if canonByte[0][c] == 0 {
			return true
		}
		upper = c == '-'
	}
	return true
}

// appendCanonicalKeyString is appendCanonicalKey for a string key; lookups
// canonicalise into a stack buffer, which needs no string and no map.
func appendCanonicalKeyString(dst []byte, key string) []byte {
	n := len(dst)
	dst = append(dst, key...)
	if !canonicalize(dst[n:]) {
		copy(dst[n:], key)
	}
	return dst
}

func (r *Request) edit(e headerEdit) {
	for i := range r.edits {
		if r.edits[i].fold == e.fold && r.edits[i].key == e.key {
			r.edits[i] = e
			return
		}
	}
	r.edits = append(r.edits, e)
}

// materialize builds the two maps v0.5.0 built and applies the changes
// recorded since, as http.Header's Set and Del would have.
func (r *Request) materialize() *Header {
	if r.hdr != nil {
		return r.hdr
	}
	r.buildHeader()
	for _, e := range r.edits {
		if e.del {
			delete(r.hdr.Header, e.key)
		} else {
			r.hdr.Header[e.key] = []string{e.value}
		}
	}
	r.clearEdits()
	return r.hdr
}

func (r *Request) clearEdits() {
	for i := range r.edits {
		r.edits[i] = headerEdit{}
	}
	r.edits = r.edits[:0]
}

// index reads the frame's header entries once per request, as views of
// the frame: no copy, and no allocation once the pool is warm. The names
// stay as APISIX sent them (lower case); lookups compare them with a
// canonical key byte by byte (keyIs), and the canonical keys themselves
// are written only for RangeHeaders (keys).
func (r *Request) index() []frameHeader {
	if r.indexed {
		return r.entries
	}
	r.indexed = true
	t := r.r.Table()
	r.frame = t.Bytes
	// The Req's headers vector (vtable slot 14) read directly, as
	// Req.Headers and TextEntry.Name and Value read it, without the
	// generated accessors' vtable lookups per header and per field.
	o := t.Offset(14)
	if o == 0 {
		return r.entries
	}
	buf := t.Bytes
	vec := uint32(o) + uint32(t.Pos)
	vec += binary.LittleEndian.Uint32(buf[vec:])
	n := binary.LittleEndian.Uint32(buf[vec:])
	for i := uint32(0); i < n; i++ {
		at := vec + 4 + 4*i
		entry := at + binary.LittleEndian.Uint32(buf[at:])
		name := textField(buf, entry, 4)
		fold := foldOf(name.of(buf))
		r.entries = append(r.entries, frameHeader{name: name, value: textField(buf, entry, 6), fold: fold})
		r.folds |= foldBit(fold)
	}
	return r.entries
}

// textField is where the string of the TextEntry table at offset table
// lies in buf: vtable slot 4 is the name, 6 the value, found as
// Table.Offset and Table.ByteVector find them; span{-1, -1} when the entry
// lacks the field. Out-of-range offsets panic, as in the generated code.
func textField(buf []byte, table uint32, slot uint16) span {
	vtable := uint32(int32(table) - int32(binary.LittleEndian.Uint32(buf[table:])))
	if slot >= binary.LittleEndian.Uint16(buf[vtable:]) {
		return span{-1, -1}
	}
	off := binary.LittleEndian.Uint16(buf[vtable+uint32(slot):])
	if off == 0 {
		return span{-1, -1}
	}
	str := table + uint32(off)
	str += binary.LittleEndian.Uint32(buf[str:])
	length := binary.LittleEndian.Uint32(buf[str:])
	start := str + 4
	_ = buf[start : start+length]
	return span{int32(start), int32(start + length)}
}

// keys writes the canonical key of each entry into r.canon, a buffer the
// pooled Request keeps, and cuts the entries' keys from it once it has
// stopped growing.
func (r *Request) keys() []frameHeader {
	entries := r.index()
	if r.keyed {
		return entries
	}
	r.keyed = true
	total := 0
	for i := range entries {
		total += int(entries[i].name.end - entries[i].name.off)
	}
	if cap(r.canon) < total {
		r.canon = make([]byte, 0, total)
	}
	canon := r.canon[:0]
	for i := range entries {
		start := len(canon)
		canon = appendCanonicalKey(canon, entries[i].name.of(r.frame))
		entries[i].key = span{int32(start), int32(len(canon))}
	}
	r.canon = canon
	return entries
}

// keyIs reports whether name's canonical key (appendCanonicalKey) is key,
// without writing it: letters compared with the case they take there, any
// other byte as it is while it is a token byte.
func keyIs(name, key []byte) bool {
	if len(name) != len(key) {
		return false
	}
	upper := true
	for i, c := range name {
		switch {
		case 'a' <= c && c <= 'z':
			if upper {
				c -= 'a' - 'A'
			}
		case 'A' <= c && c <= 'Z':
			if !upper {
				c += 'a' - 'A'
			}
		case canonByte[0][c] == 0:
			// A name with a byte that is not a token byte is its own key.
			return string(name) == string(key)
		}
		if c != key[i] {
			return !isToken(name[i+1:]) && string(name) == string(key)
		}
		upper = c == '-'
	}
	return true
}

func isToken(name []byte) bool {
	for _, c := range name {
		if canonByte[0][c] == 0 {
			return false
		}
	}
	return true
}

func isTokenString(name string) bool {
	for i := 0; i < len(name); i++ {
		if canonByte[0][name[i]] == 0 {
			return false
		}
	}
	return true
}

// appendCanonicalKey appends what textproto.CanonicalMIMEHeaderKey returns
// for name: name unchanged when a byte is not a token byte (a space
// included), else upper case at the start and after each '-', lower case
// elsewhere. TestCanonicalKeyAsTextproto holds the two together.
func appendCanonicalKey(dst, name []byte) []byte {
	n := len(dst)
	dst = append(dst, name...)
	if !canonicalize(dst[n:]) {
		copy(dst[n:], name)
	}
	return dst
}

// canonicalize canonicalises b in place, one table lookup a byte, and
// reports false, b half changed, at the first byte that is not a token
// byte: the caller puts the name back as it was.
func canonicalize(b []byte) bool {
	up := 1
	for i, c := range b {
		m := canonByte[up][c]
		if m == 0 {
			return false
		}
		b[i] = m
		up = 0
		if c == '-' {
			up = 1
		}
	}
	return true
}

// canonByte[1][c] is c at the start of a name or after '-' (upper case),
// canonByte[0][c] elsewhere (lower case); 0 for a byte that is not a token
// byte.
var canonByte = func() (t [2][256]byte) {
	for c := 0; c < 256; c++ {
		if !validHeaderFieldByte(byte(c)) {
			continue
		}
		lo, hi := byte(c), byte(c)
		if 'A' <= c && c <= 'Z' {
			lo += 'a' - 'A'
		}
		if 'a' <= c && c <= 'z' {
			hi -= 'a' - 'A'
		}
		t[0][c], t[1][c] = lo, hi
	}
	return t
}()

// validHeaderFieldByte is net/textproto's: the tchar of RFC 7230.
func validHeaderFieldByte(c byte) bool {
	const mask = 0 |
		(1<<(10)-1)<<'0' |
		(1<<(26)-1)<<'a' |
		(1<<(26)-1)<<'A' |
		1<<'!' |
		1<<'#' |
		1<<'$' |
		1<<'%' |
		1<<'&' |
		1<<'\'' |
		1<<'*' |
		1<<'+' |
		1<<'-' |
		1<<'.' |
		1<<'^' |
		1<<'_' |
		1<<'`' |
		1<<'|' |
		1<<'~'
	return ((uint64(1)<<c)&(mask&(1<<64-1)) |
		(uint64(1)<<(c-64))&(mask>>64)) != 0
}

// headerValue is the first value under the canonical key, as the map would
// give it.
func (r *Request) headerValue(key []byte) ([]byte, bool) {
	if r.hdr != nil {
		if vs := r.hdr.Header[string(key)]; len(vs) > 0 {
			return stringBytes(vs[0]), true
		}
		return nil, false
	}
	fold := foldOf(key)
	for i := range r.edits {
		if e := &r.edits[i]; e.fold == fold && e.key == string(key) {
			if e.del {
				return nil, false
			}
			return stringBytes(e.value), true
		}
	}
	entries := r.index()
	if !r.mayHold(fold) {
		return nil, false
	}
	for i := range entries {
		if e := &entries[i]; e.fold == fold && keyIs(e.name.of(r.frame), key) {
			return e.value.of(r.frame), true
		}
	}
	return nil, false
}

// edited reports whether a change was recorded under the key of the frame
// header name.
func (r *Request) edited(name []byte, fold uint32) bool {
	for i := range r.edits {
		if r.edits[i].fold == fold && keyIs(name, stringBytes(r.edits[i].key)) {
			return true
		}
	}
	return false
}

// HeaderBytes returns the first value of the header key, as
// Header().Get(key) would, and whether the header is there, without copying
// it: the slice is a view of the request frame (or of the value a plugin
// set). It is read-only and valid until the request ends; a plugin that
// keeps it beyond copies it. Changes made through Header() before the call
// are seen.
//
// apisix-identity-runner patch: header views. Plugins reach it through an
// interface assertion, r.(interface{ HeaderBytes(string) ([]byte, bool) }).
func (r *Request) HeaderBytes(key string) ([]byte, bool) {
	r.hdrUsed = true
	var buf [64]byte
	return r.headerValue(appendCanonicalKeyString(buf[:0], key))
}

// RangeHeaders calls fn with each header value Header().View() would hold
// and the map key it would be under, until fn returns false: every value of
// a repeated header, each of a name sent in several letter cases under the
// one canonical key, the headers set through Header() and none it deleted.
// Both slices are read-only views valid until the request ends. Values of
// one key come in the order View() lists them; keys in no set order.
//
// apisix-identity-runner patch: header views. Plugins reach it through
// r.(interface{ RangeHeaders(func(key, value []byte) bool) }).
func (r *Request) RangeHeaders(fn func(key, value []byte) bool) {
	r.hdrUsed = true
	if r.hdr != nil {
		for k, vs := range r.hdr.Header {
			for _, v := range vs {
				if !fn(stringBytes(k), stringBytes(v)) {
					return
				}
			}
		}
		return
	}
	for _, e := range r.keys() {
		if len(r.edits) > 0 && r.edited(e.name.of(r.frame), e.fold) {
			continue
		}
		if !fn(e.key.of(r.canon), e.value.of(r.frame)) {
			return
		}
	}
	r.rangeEdits(fn)
}

func (r *Request) rangeEdits(fn func(key, value []byte) bool) {
	for i := range r.edits {
		if e := &r.edits[i]; !e.del {
			if !fn(stringBytes(e.key), stringBytes(e.value)) {
				return
			}
		}
	}
}

// RangeHeaderNames is RangeHeaders with each frame header under its name as
// APISIX sent it (usually lower case) rather than its map key: the same
// values, each under a name whose textproto.CanonicalMIMEHeaderKey is the
// key RangeHeaders gives. A plugin that folds letter case itself saves the
// writing of the keys. After View(), and for headers set through Header(),
// the names are the map keys.
//
// apisix-identity-runner patch: header views. Plugins reach it through
// r.(interface{ RangeHeaderNames(func(name, value []byte) bool) }).
func (r *Request) RangeHeaderNames(fn func(name, value []byte) bool) {
	if r.hdr != nil {
		r.RangeHeaders(fn)
		return
	}
	r.hdrUsed = true
	for _, e := range r.index() {
		name := e.name.of(r.frame)
		if len(r.edits) > 0 && r.edited(name, e.fold) {
			continue
		}
		if !fn(name, e.value.of(r.frame)) {
			return
		}
	}
	r.rangeEdits(fn)
}

// markSentEdits marks the recorded changes the map diff of FetchChanges
// would send (a deletion for a deleted header the frame had, the new value
// for a header whose values it changed, nothing for the rest) and returns
// how many there are.
func (r *Request) markSentEdits() int {
	entries := r.index()
	sent := 0
	for i := range r.edits {
		e := &r.edits[i]
		n, same := 0, false
		if r.mayHold(e.fold) {
			for j := range entries {
				if f := &entries[j]; f.fold == e.fold && keyIs(f.name.of(r.frame), stringBytes(e.key)) {
					n++
					same = n == 1 && !e.del && string(f.value.of(r.frame)) == e.value
				}
			}
		}
		e.sent = !(e.del && n == 0 || same)
		if e.sent {
			sent++
		}
	}
	return sent
}

// fetchEdits writes the Rewrite header entries of the recorded changes
// through the builder, for an answer that also changes the path, the
// arguments or the response headers (the rest take writeHeaderRewrite).
func (r *Request) fetchEdits(builder *flatbuffers.Builder) []flatbuffers.UOffsetT {
	hdrs := r.changes[:0]
	r.markSentEdits()
	for i := range r.edits {
		e := &r.edits[i]
		if !e.sent {
			continue
		}
		name := builder.CreateString(e.key)
		var value flatbuffers.UOffsetT
		if !e.del {
			value = builder.CreateString(e.value)
		}
		A6.TextEntryStart(builder)
		A6.TextEntryAddName(builder, name)
		if !e.del {
			A6.TextEntryAddValue(builder, value)
		}
		hdrs = append(hdrs, A6.TextEntryEnd(builder))
	}
	r.changes = hdrs
	return hdrs
}

// stringBytes views s as a byte slice without copying. The result must not
// be written: HeaderBytes and RangeHeaders hand out read-only views.
func stringBytes(s string) []byte {
	if s == "" {
		return nil
	}
	return *(*[]byte)(unsafe.Pointer(&struct {
		string
		int
	}{s, len(s)}))
}

// poisonViews, set by tests (pkg/httptest.PoisonViews), makes Reset
// overwrite the frame and the key buffer, so that a view a plugin kept past
// its request reads garbage instead of silently staying valid.
var poisonViews atomic.Bool

// poisonByte fills what Reset poisons.
const poisonByte = 0xEE

func (r *Request) resetViews() {
	if poisonViews.Load() {
		if r.r != nil {
			b := r.r.Table().Bytes
			for i := range b {
				b[i] = poisonByte
			}
		}
		c := r.canon[:cap(r.canon)]
		for i := range c {
			c[i] = poisonByte
		}
	}
	r.entries = r.entries[:0]
	r.frame = nil
	r.indexed = false
	r.folds = 0
	r.keyed = false
	r.clearEdits()
	r.hdrUsed = false
}

// SetPoisonViews is pkg/httptest.PoisonViews.
func SetPoisonViews(on bool) { poisonViews.Store(on) }
