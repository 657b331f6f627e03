// Tests of apisix-identity-runner patch 7, header views (PATCHES.md).

package http

import (
	"fmt"
	"math/rand"
	"net/http"
	"net/textproto"
	"sort"
	"sync"
	"testing"

	"github.com/api7/ext-plugin-proto/go/A6"
	hrc "github.com/api7/ext-plugin-proto/go/A6/HTTPReqCall"
	flatbuffers "github.com/google/flatbuffers/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apache/apisix-go-plugin-runner/internal/util"
)

func TestCanonicalKeyAsTextproto(t *testing.T) {
	names := []string{"", "x-userinfo", "X-USERINFO", "x_userinfo", "X_User_Orgs", "bad name", "x-a b", "ä-b",
		"x userinfo", "X Userinfo", "X-Userinf\x7f", "x-useRinfo", "BAD NAME", "Bad name",
		"-x", "x--y", "a\x00b", "a:b", "cookie", "COOKIE", "x-id-token", "X-ID-Token", "1-2-3", "~x|y`z"}
	rng := rand.New(rand.NewSource(1))
	alphabet := "abcXYZ-_ :\x7f\xc3é0"
	for i := 0; i < 5000; i++ {
		b := make([]byte, rng.Intn(12))
		for j := range b {
			b[j] = alphabet[rng.Intn(len(alphabet))]
		}
		names = append(names, string(b))
	}
	for _, n := range names {
		want := textproto.CanonicalMIMEHeaderKey(n)
		assert.Equal(t, want, string(appendCanonicalKey(nil, []byte(n))), "%q", n)
		assert.Equal(t, "x"+want, string(appendCanonicalKeyString([]byte("x"), n)), "%q", n)
		assert.Equal(t, want, canonicalKey(n), "%q", n)
		assert.Equal(t, want == n, isCanonical(n), "%q", n)
	}
	// keyIs against the keys of the fixed names and of random ones.
	for _, n := range names {
		for _, m := range append(names[:40:40], n, textproto.CanonicalMIMEHeaderKey(n)) {
			key := textproto.CanonicalMIMEHeaderKey(m)
			assert.Equal(t, textproto.CanonicalMIMEHeaderKey(n) == key, keyIs([]byte(n), []byte(key)), "%q is %q", n, key)
		}
	}
}

// headerOp is a change a plugin makes through Header().
type headerOp struct {
	del        bool
	key, value string
}

// randomHeaders are names in several cases and spellings, repeated, empty
// values, names textproto leaves alone.
func randomHeaders(rng *rand.Rand) []pair {
	names := []string{"x-userinfo", "X-Userinfo", "x_userinfo", "X_USERINFO", "x-user-orgs", "X-User-Orgs",
		"cookie", "host", "bad name", "x-custom", "X-CUSTOM", "x-id-token", "authorization", ""}
	values := []string{"", "a", "b", "acme,globex", " spaced ", "eyJ0eXAi"}
	out := make([]pair, rng.Intn(12))
	for i := range out {
		out[i] = pair{names[rng.Intn(len(names))], values[rng.Intn(len(values))]}
	}
	return out
}

func randomOps(rng *rand.Rand) []headerOp {
	keys := []string{"X-Userinfo", "x-userinfo", "X_userinfo", "X-User-Orgs", "Cookie", "X-New", "bad name",
		"X-Id-Token", "X-ID-Token"}
	values := []string{"", "a", "acme", "new"}
	out := make([]headerOp, rng.Intn(6))
	for i := range out {
		out[i] = headerOp{del: rng.Intn(3) == 0, key: keys[rng.Intn(len(keys))], value: values[rng.Intn(len(values))]}
	}
	return out
}

func apply(h interface {
	Set(string, string)
	Del(string)
}, ops []headerOp) {
	for _, op := range ops {
		if op.del {
			h.Del(op.key)
		} else {
			h.Set(op.key, op.value)
		}
	}
}

// ranged is what RangeHeaders shows, as a map like View().
func ranged(r *Request) http.Header {
	out := http.Header{}
	r.RangeHeaders(func(k, v []byte) bool {
		out[string(k)] = append(out[string(k)], string(v))
		return true
	})
	return out
}

// rangedNames is what RangeHeaderNames shows, under the names' keys.
func rangedNames(r *Request) http.Header {
	out := http.Header{}
	r.RangeHeaderNames(func(n, v []byte) bool {
		k := textproto.CanonicalMIMEHeaderKey(string(n))
		out[k] = append(out[k], string(v))
		return true
	})
	return out
}

// sortedChanges is the Rewrite's header entries in a fixed order: the map
// diff of v0.5.0 sends them in map order.
func sortedChanges(t *testing.T, r *Request) []string {
	b := util.GetBuilder()
	defer util.PutBuilder(b)
	if !r.FetchChanges(r.ID(), b) {
		return nil
	}
	rw := getRewriteAction(t, b)
	require.NotNil(t, rw)
	var out []string
	for i := 0; i < rw.HeadersLength(); i++ {
		e := &A6.TextEntry{}
		require.True(t, rw.Headers(e, i))
		out = append(out, fmt.Sprintf("%s=%q/%v", e.Name(), e.Value(), e.Value() == nil))
	}
	sort.Strings(out)
	return append(out, fmt.Sprintf("len=%d", rw.HeadersLength()))
}

// TestHeaderViewsShowWhatViewShows: for random header sets and random
// changes through Header(), the views (HeaderBytes, RangeHeaders,
// RangeHeaderNames, Get)
// give what the map gives after the same changes, and FetchChanges sends
// the same entries as when the maps were built first (v0.5.0's path).
func TestHeaderViewsShowWhatViewShows(t *testing.T) {
	rng := rand.New(rand.NewSource(18))
	probe := []string{"X-Userinfo", "x_userinfo", "X_userinfo", "X-User-Orgs", "Cookie", "X-New", "bad name",
		"X-ID-Token", "Host", "X-Custom", "Absent", ""}
	for i := 0; i < 3000; i++ {
		in, before, after := randomHeaders(rng), randomOps(rng), randomOps(rng)
		buf := buildReq(reqOpt{headers: in})

		// v0.5.0's path: the maps first, every change on them.
		ref := CreateRequest(buf)
		want := ref.Header().View()
		apply(ref.Header(), before)
		wantMid := want.Clone()
		apply(ref.Header(), after)
		wantChanges := sortedChanges(t, ref)
		ReuseRequest(ref)

		r := CreateRequest(buf)
		apply(r.Header(), before)
		if rng.Intn(2) == 0 {
			// Names first, then keys: either may be the first to read the frame.
			assert.Equal(t, canonical(wantMid), canonical(rangedNames(r)), "case %d: %v %v", i, in, before)
		}
		assert.Equal(t, canonical(wantMid), canonical(ranged(r)), "case %d: %v %v", i, in, before)
		assert.Equal(t, canonical(wantMid), canonical(rangedNames(r)), "case %d: %v %v", i, in, before)
		for _, k := range probe {
			v, ok := r.HeaderBytes(k)
			assert.Equal(t, wantMid.Get(k), string(v), "case %d: %q of %v after %v", i, k, in, before)
			assert.Equal(t, len(wantMid.Values(k)) > 0, ok, "case %d: %q", i, k)
			assert.Equal(t, wantMid.Get(k), r.Header().Get(k))
		}
		if rng.Intn(4) == 0 {
			// A plugin asks for the map half-way: the changes so far are in it.
			assert.Equal(t, wantMid, r.Header().View(), "case %d", i)
			assert.Equal(t, canonical(wantMid), canonical(rangedNames(r)), "case %d", i)
		}
		apply(r.Header(), after)
		assert.Equal(t, wantChanges, sortedChanges(t, r), "case %d: %v then %v %v", i, in, before, after)
		ReuseRequest(r)
	}
}

// canonical drops empty value lists, which View() keeps after a Set/Del
// through the map but RangeHeaders cannot show.
func canonical(h http.Header) http.Header {
	out := http.Header{}
	for k, vs := range h {
		if len(vs) > 0 {
			out[k] = vs
		}
	}
	return out
}

// TestViewThenViewsSeeTheMap: after View(), the views read the map, and
// changes made directly in it are seen; FetchChanges sends them.
func TestViewThenViewsSeeTheMap(t *testing.T) {
	r := CreateRequest(buildReq(reqOpt{headers: []pair{{"x-userinfo", "a"}, {"x_userinfo", "forged"}, {"cookie", "c"}}}))
	defer ReuseRequest(r)
	r.Header().Set("X-User-Id", "u")
	m := r.Header().View()
	assert.Equal(t, []string{"u"}, m["X-User-Id"])
	m["X-Direct"] = []string{"d"}
	delete(m, "X_userinfo")
	v, ok := r.HeaderBytes("x-direct")
	assert.True(t, ok)
	assert.Equal(t, "d", string(v))
	_, ok = r.HeaderBytes("X_userinfo")
	assert.False(t, ok)
	assert.Equal(t, http.Header{"X-Userinfo": {"a"}, "Cookie": {"c"}, "X-User-Id": {"u"}, "X-Direct": {"d"}}, ranged(r))
	got := rewriteHeadersOf(t, r)
	assert.Equal(t, map[string][]string{"X-User-Id": {"u"}, "X-Direct": {"d"}, "X_userinfo": {"<deleted>"}}, got)
}

func rewriteHeadersOf(t *testing.T, r *Request) map[string][]string {
	b := util.GetBuilder()
	defer util.PutBuilder(b)
	require.True(t, r.FetchChanges(r.ID(), b))
	return rewriteHeaders(t, b)
}

// TestReadingThroughViewsSendsWhatHeaderSent: a plugin that only reads,
// through Header() or the views, gets the Rewrite with no header entries
// that v0.5.0 sent once Header() was called; one that touches nothing gets
// no Rewrite.
func TestReadingThroughViewsSendsWhatHeaderSent(t *testing.T) {
	buf := buildReq(reqOpt{headers: []pair{{"x-userinfo", "a"}}})
	for name, read := range map[string]func(r *Request){
		"Header().Get": func(r *Request) { _ = r.Header().Get("X-Userinfo") },
		"HeaderBytes":  func(r *Request) { _, _ = r.HeaderBytes("X-Userinfo") },
		"RangeHeaders": func(r *Request) { r.RangeHeaders(func(k, v []byte) bool { return true }) },
	} {
		r := CreateRequest(buf)
		read(r)
		assert.Equal(t, map[string][]string{}, rewriteHeadersOf(t, r), name)
		ReuseRequest(r)
	}
	r := CreateRequest(buf)
	b := util.GetBuilder()
	assert.False(t, r.FetchChanges(r.ID(), b))
	util.PutBuilder(b)
	ReuseRequest(r)
}

// TestViewsDieWithTheRequest: with poisoning on, pooled requests run
// concurrently, each by a plugin that keeps a copy of a header and of a
// header name; what it kept never changes after its request ends, while
// the view it read the copy from is overwritten. Under -race this also
// checks that no view is shared between two requests in flight.
func TestViewsDieWithTheRequest(t *testing.T) {
	SetPoisonViews(true)
	defer SetPoisonViews(false)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				want := fmt.Sprintf("user-%d-%d", g, i)
				buf := buildReq(reqOpt{headers: []pair{{"x-userinfo", want}, {"x-custom-name", "v"}}})
				r := CreateRequest(buf)
				view, ok := r.HeaderBytes("X-Userinfo")
				require.True(t, ok)
				kept := string(view) // what a plugin keeps: a copy
				var keptName string
				r.RangeHeaders(func(k, v []byte) bool {
					if string(v) == "v" {
						keptName = string(k)
					}
					return true
				})
				r.Header().Set("X-User-Id", want)
				ReuseRequest(r)
				assert.Equal(t, want, kept)
				assert.Equal(t, "X-Custom-Name", keptName)
				// The frame is this goroutine's own: reading the stale
				// view races with nobody.
				assert.NotEqual(t, want, string(view), "the frame was not poisoned")
			}
		}(g)
	}
	wg.Wait()
}

// TestKeptKeyViewIsPoisoned: a key view (of the buffer the pooled Request
// keeps) is overwritten when its request ends. Sequential: the buffer
// passes to the next request through the pool.
func TestKeptKeyViewIsPoisoned(t *testing.T) {
	SetPoisonViews(true)
	defer SetPoisonViews(false)
	r := CreateRequest(buildReq(reqOpt{headers: []pair{{"x-custom-name", "v"}}}))
	var view []byte
	r.RangeHeaders(func(k, v []byte) bool { view = k; return true })
	require.Equal(t, "X-Custom-Name", string(view))
	ReuseRequest(r)
	assert.NotEqual(t, "X-Custom-Name", string(view))
}

// TestIndexReadsWhatTheAccessorsRead: index parses the headers vector by
// hand; it must find every name and value the generated accessors find,
// fields missing included (an entry without a value, or without a name).
func TestIndexReadsWhatTheAccessorsRead(t *testing.T) {
	builder := flatbuffers.NewBuilder(256)
	type entry struct{ name, value *string }
	str := func(s string) *string { return &s }
	entries := []entry{{str("host"), str("a.example")}, {str("x-empty"), str("")}, {str("x-novalue"), nil},
		{nil, str("nameless")}, {str(""), str("")}, {str("X-Userinfo"), str("eyJ9")}}
	offs := make([]flatbuffers.UOffsetT, len(entries))
	for i, e := range entries {
		var name, value flatbuffers.UOffsetT
		if e.name != nil {
			name = builder.CreateString(*e.name)
		}
		if e.value != nil {
			value = builder.CreateString(*e.value)
		}
		A6.TextEntryStart(builder)
		if e.name != nil {
			A6.TextEntryAddName(builder, name)
		}
		if e.value != nil {
			A6.TextEntryAddValue(builder, value)
		}
		offs[i] = A6.TextEntryEnd(builder)
	}
	hrc.ReqStartHeadersVector(builder, len(offs))
	for i := len(offs) - 1; i >= 0; i-- {
		builder.PrependUOffsetT(offs[i])
	}
	vec := builder.EndVector(len(offs))
	hrc.ReqStart(builder)
	hrc.ReqAddId(builder, 1)
	hrc.ReqAddHeaders(builder, vec)
	builder.Finish(hrc.ReqEnd(builder))

	r := CreateRequest(builder.FinishedBytes())
	defer ReuseRequest(r)
	got := r.index()
	require.Len(t, got, len(entries))
	var te A6.TextEntry
	for i := range entries {
		require.True(t, r.r.Headers(&te, i))
		assert.Equal(t, te.Name(), got[i].name.of(r.frame), "name of entry %d", i)
		assert.Equal(t, te.Value(), got[i].value.of(r.frame), "value of entry %d", i)
		assert.Equal(t, foldOf(te.Name()), got[i].fold, "fold of entry %d", i)
	}
	v, ok := r.HeaderBytes("X-USERINFO")
	assert.True(t, ok)
	assert.Equal(t, "eyJ9", string(v))
}

// TestFoldIgnoresLetterCaseOnly: names with one canonical key share a
// fold, which lookups rely on to skip the others.
func TestFoldIgnoresLetterCaseOnly(t *testing.T) {
	for _, pair := range [][2]string{{"x-userinfo", "X-Userinfo"}, {"X_USERINFO", "x_userinfo"}, {"a", "A"}, {"", ""}} {
		assert.Equal(t, foldOf([]byte(pair[0])), foldOf([]byte(pair[1])), "%q and %q", pair[0], pair[1])
	}
	assert.NotEqual(t, foldOf([]byte("x-user-id")), foldOf([]byte("x-user-ie")))
}

// canonicalWriter is what SetCanonical and DelCanonical are reached through.
type canonicalWriter interface {
	SetCanonical(key, value string)
	DelCanonical(key string)
}

// TestCanonicalWritesAreSetAndDel: with canonical keys, SetCanonical and
// DelCanonical record what Set and Del record, before and after the maps
// are built: the same views, the same Rewrite entries.
func TestCanonicalWritesAreSetAndDel(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	for i := 0; i < 2000; i++ {
		in, ops := randomHeaders(rng), randomOps(rng)
		for j := range ops {
			ops[j].key = textproto.CanonicalMIMEHeaderKey(ops[j].key)
		}
		buildMaps := rng.Intn(3) == 0
		buf := buildReq(reqOpt{headers: in})

		ref := CreateRequest(buf)
		if buildMaps {
			ref.Header().View()
		}
		apply(ref.Header(), ops)
		want, wantChanges := canonical(ranged(ref)), sortedChanges(t, ref)
		ReuseRequest(ref)

		r := CreateRequest(buf)
		if buildMaps {
			r.Header().View()
		}
		cw, ok := r.Header().(canonicalWriter)
		require.True(t, ok)
		for _, op := range ops {
			if op.del {
				cw.DelCanonical(op.key)
			} else {
				cw.SetCanonical(op.key, op.value)
			}
		}
		assert.Equal(t, want, canonical(ranged(r)), "case %d: %v %v", i, in, ops)
		assert.Equal(t, wantChanges, sortedChanges(t, r), "case %d: %v %v", i, in, ops)
		ReuseRequest(r)
	}
}
