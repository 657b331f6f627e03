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

// apisix-identity-runner patch 9: the header Rewrite written in one pass.
//
// flatbuffers' generic Builder writes an answer back to front, a field at a
// time, and compares every finished table's vtable with each one it wrote
// before. For the seven header entries an identity plugin sends on a
// browser's request that was a tenth of the runner's CPU (issue 18). An
// answer that only changes headers recorded through the views (patch 7) has
// one shape: a Resp whose action is a Rewrite with a headers vector of
// TextEntry tables. writeHeaderRewrite lays that out front to back into a
// buffer the pooled Request keeps, and hands it to the builder as one block.
//
// The block, offsets from its start (every table, vector and string length
// 4-aligned; flatbuffers is little-endian, a table's first word is the
// signed distance back to its vtable, a reference the unsigned distance
// forward from where it is stored):
//
//	 0  Resp's vtable: size 10, table 16, id at 4, action_type at 12, action at 8; 2 bytes padding
//	12  Resp: vtable distance 12, id, action (-> 36), action_type Rewrite, 3 bytes padding
//	28  Rewrite's vtable: size 8, table 8, path absent, headers at 4
//	36  Rewrite: vtable distance 8, headers (-> 44)
//	44  headers vector: count n, then n references to the entries
//	48+4n  vtable of an entry with a value (name at 4, value at 8), then of
//	       a deletion (name at 4; 2 bytes padding)
//	64+4n  the entries, each a table followed by its strings: vtable
//	       distance, name, value (a deletion has no value)
//
// A string is its length, its bytes, a zero byte, and zeros up to the next
// multiple of 4. Every byte of the block is written, padding included, so
// nothing of an earlier answer is left in it.

import (
	"encoding/binary"

	hrc "github.com/api7/ext-plugin-proto/go/A6/HTTPReqCall"
	flatbuffers "github.com/google/flatbuffers/go"
)

const (
	rewriteRespAt     = 12
	rewriteVTableAt   = 28
	rewriteTableAt    = 36
	rewriteVectorAt   = 44
	rewriteFixedBytes = 48 + 16 // up to the vector's references, plus the two entry vtables
	// maxKeptAnswer bounds the block a pooled Request keeps: a larger
	// answer's goes with its request.
	maxKeptAnswer = 64 << 10
)

var le = binary.LittleEndian

// writeHeaderRewrite writes the answer for a request whose only changes are
// the header edits recorded through Header() (no maps built, no path,
// arguments or response headers): the same entries fetchEdits writes, in
// the same order.
func (r *Request) writeHeaderRewrite(id uint32, builder *flatbuffers.Builder) {
	n := r.markSentEdits()
	size := rewriteFixedBytes + 4*n
	for i := range r.edits {
		if e := &r.edits[i]; e.sent {
			size += entryTableBytes(e.del) + stringBytesLen(len(e.key))
			if !e.del {
				size += stringBytesLen(len(e.value))
			}
		}
	}
	b := r.answer
	if cap(b) < size {
		b = make([]byte, size)
	}
	b = b[:size]

	putVTable(b, 0, 16, 4, 12, 8) // id, action_type, action
	le.PutUint16(b[10:], 0)

	le.PutUint32(b[rewriteRespAt:], rewriteRespAt)
	le.PutUint32(b[rewriteRespAt+4:], id)
	le.PutUint32(b[rewriteRespAt+8:], rewriteTableAt-(rewriteRespAt+8))
	le.PutUint32(b[rewriteRespAt+12:], uint32(hrc.ActionRewrite))

	putVTable(b, rewriteVTableAt, 8, 0, 4) // path absent, headers

	le.PutUint32(b[rewriteTableAt:], rewriteTableAt-rewriteVTableAt)
	le.PutUint32(b[rewriteTableAt+4:], rewriteVectorAt-(rewriteTableAt+4))

	le.PutUint32(b[rewriteVectorAt:], uint32(n))
	setVT := rewriteVectorAt + 4 + 4*n
	delVT := setVT + 8
	putVTable(b, setVT, 12, 4, 8) // name, value
	putVTable(b, delVT, 8, 4)     // name
	le.PutUint16(b[delVT+6:], 0)

	ref, at := rewriteVectorAt+4, delVT+8
	for i := range r.edits {
		e := &r.edits[i]
		if !e.sent {
			continue
		}
		le.PutUint32(b[ref:], uint32(at-ref))
		ref += 4
		table := at
		if e.del {
			le.PutUint32(b[table:], uint32(table-delVT))
		} else {
			le.PutUint32(b[table:], uint32(table-setVT))
		}
		at = table + entryTableBytes(e.del)
		le.PutUint32(b[table+4:], uint32(at-(table+4)))
		at = putString(b, at, e.key)
		if !e.del {
			le.PutUint32(b[table+8:], uint32(at-(table+8)))
			at = putString(b, at, e.value)
		}
	}

	// The block goes in as a byte vector: its 4-byte length sits between
	// the root reference and the block, unreferenced, and the vector is
	// 4-aligned, so the block's offsets and alignment hold as laid out.
	vector := builder.CreateByteVector(b)
	builder.Finish(vector - 4 - rewriteRespAt)

	if cap(b) > maxKeptAnswer {
		b = nil
	}
	r.answer = b[:0]
}

// putVTable writes at b[at:] the vtable of a table of tableSize bytes whose
// fields are at these offsets in it (0: absent).
func putVTable(b []byte, at int, tableSize uint16, fields ...uint16) {
	le.PutUint16(b[at:], uint16(4+2*len(fields)))
	le.PutUint16(b[at+2:], tableSize)
	for i, f := range fields {
		le.PutUint16(b[at+4+2*i:], f)
	}
}

// entryTableBytes is the size of an entry's table: its vtable distance and
// name, and the value's reference unless the entry is a deletion. The sizing
// and the writing of the block both take it from here.
func entryTableBytes(del bool) int {
	if del {
		return 8
	}
	return 12
}

// stringBytesLen is the room a string of n bytes takes: length, bytes, the
// zero byte, padding to 4.
func stringBytesLen(n int) int { return (4 + n + 1 + 3) &^ 3 }

// putString writes s at b[at:] as a flatbuffers string and returns where
// the next thing goes.
func putString(b []byte, at int, s string) int {
	le.PutUint32(b[at:], uint32(len(s)))
	copy(b[at+4:], s)
	end := at + stringBytesLen(len(s))
	for i := at + 4 + len(s); i < end; i++ {
		b[i] = 0
	}
	return end
}
