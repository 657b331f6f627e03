package cache

import (
	"container/heap"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Revocation ends sessions at the gateway: one session (SessionID set), or
// every session of a subject whose tokens were issued at or before At
// (SessionID empty). It is kept until Until, after which no token of the
// revoked sessions can still be valid.
type Revocation struct {
	// Issuer is the realm the session belongs to (the tokens' iss): session
	// and user ids are unique only within it.
	Issuer string
	// SessionID is the session's sid; "" revokes every session of Subject.
	SessionID string
	// Subject is the user (sub). Required when SessionID is "".
	Subject string
	// At is when the session ended. For a subject-wide revocation a token
	// issued at or before At is refused; one issued after it (a new login)
	// is not.
	At time.Time
	// Until is when the revocation may be forgotten.
	Until time.Time
}

// Revoker is what the plugins need of the revocation store: Revoke records a
// revocation for the fleet; Revoked answers from this process's copy alone
// (no I/O: it runs on every request).
type Revoker interface {
	Revoke(ctx context.Context, r Revocation) error
	Revoked(issuer, sessionID, subject string, issuedAt time.Time) bool
}

// RevocationOptions bound the store.
type RevocationOptions struct {
	// MaxEntries bounds the revocations kept in process. Default 200 000;
	// must be >= 0.
	MaxEntries int
	// MaxBytes bounds the memory of the revocations kept in process: their
	// identifiers plus about 200 bytes of bookkeeping each. Default 64 MiB;
	// must be >= 0.
	MaxBytes int64
	// LoadTimeout bounds the load of the fleet's revocations from Redis in
	// NewRevocations. Default 5s; must be >= 0.
	LoadTimeout time.Duration
}

const (
	defaultRevEntries     = 200000
	defaultRevBytes       = 64 << 20
	defaultRevLoadTimeout = 5 * time.Second
	// revEntryOverhead is what an entry costs beside its identifiers: the map slot, the entry,
	// its place in the expiry heap (TestRevocationBytesAccounting measures it).
	revEntryOverhead = 200
	// maxRevField bounds each identifier: Keycloak's are UUIDs and URLs. A longer one is a
	// producer's bug, refused before it costs memory.
	maxRevField = 1024
	// maxPending bounds the revocations waiting for Redis to come back.
	maxPending = 10000
	// revReloadTimeout bounds a background load (after a resubscription): ~200 000 entries.
	revReloadTimeout = 30 * time.Second
	// revScanCount is the SCAN batch of a load, and the GETs pipelined per round trip.
	revScanCount = 1000
	// revAckTimeout bounds how long Revoke waits for the peers to say they hold a revocation it
	// published. A peer that never answers (a runner of an older version, another subscriber of
	// the channel) costs every Revoke this much: a logout answered later, never a session served.
	revAckTimeout = 500 * time.Millisecond
	// revAckQueue bounds the acknowledgements waiting to be published.
	revAckQueue = 1024
)

// ErrNotShared (wrapped) is returned by Revoke when the revocation holds in this process but
// Redis did not take it: the other processes do not refuse the session yet. It is stored and
// published again when Redis is back.
var ErrNotShared = errors.New("cache: revocation kept in this process until Redis is back")

// Revocations is the fleet's revocation store: kept in process, and with
// Redis stored and published so that every process refuses a session one of
// them revoked. See the package documentation, Revocations.
type Revocations struct {
	c    *Cache // nil or without Redis: this process alone
	opts RevocationOptions
	now  func() time.Time

	mu      sync.RWMutex
	entries map[revKey]*revEntry
	byUntil revHeap // soonest Until first: expiry, and eviction at the bound
	bytes   int64
	issuers map[string]string // a few issuers' strings, shared by their entries
	n       atomic.Int64      // len(entries), read without the lock
	nSubj   atomic.Int64      // subject-wide entries: none, and a request looks up its sid alone

	// receiveHook, when set (tests), runs before a peer's revocation is applied: a slow process.
	receiveHook atomic.Pointer[func()]

	pendMu  sync.Mutex
	pending []revRecord // revoked here, not yet taken by Redis

	needLoad atomic.Bool   // the fleet's revocations are to be loaded (again)
	wake     chan struct{} // the subscription was (re)established
	evicted  atomic.Int64  // evictions since the last log line
	lastLog  atomic.Int64  // unix ns of the last eviction log line

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	onRev  *func(string, *revMessage)
	onAck  *func(string)
	onSub  *func()

	// Acknowledgements: Revoke waits until every peer that got its message says it holds the
	// revocation, so that once Revoke returns (and the back-channel route answers) no process
	// serves the session; peers answer from ackOut.
	waitMu  sync.Mutex
	waiters map[string]*ackWait // rev key -> the Revoke waiting for its peers
	ackOut  chan ackOut
}

type ackWait struct {
	n      atomic.Int64
	notify chan struct{}
}

type ackOut struct{ to, key string }

var _ Revoker = (*Revocations)(nil)

// Kinds of revocation.
const (
	kindSession = "sid"
	kindSubject = "sub"
)

type revKey struct {
	kind   string // kindSession or kindSubject
	issuer string
	id     string // the sid or the sub
}

type revEntry struct {
	key   revKey
	at    int64 // unix ms; subject-wide: tokens issued at or before it are refused
	until int64 // unix ms
	idx   int   // position in byUntil
}

func (e *revEntry) size() int64 {
	return int64(len(e.key.issuer)+len(e.key.id)) + revEntryOverhead
}

type revHeap []*revEntry

func (h revHeap) Len() int           { return len(h) }
func (h revHeap) Less(i, j int) bool { return h[i].until < h[j].until }
func (h revHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *revHeap) Push(x any) { e := x.(*revEntry); e.idx = len(*h); *h = append(*h, e) }
func (h *revHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}

// revRecord is a revocation as stored in Redis and carried on the channel (inside the seal).
type revRecord struct {
	Kind   string
	Issuer string
	ID     string
	At     int64 // unix ms
	Until  int64 // unix ms
}

// revFormat is the first byte of an encoded record. The encoding is binary, not JSON: a load
// decodes up to 200 000 of them while the process starts.
const revFormat = 1

// encode is 1 format byte, 1 kind byte (0 sid, 1 sub), At and Until as 8-byte big-endian unix
// ms, then the issuer and the id, each after its 2-byte big-endian length.
func (r *revRecord) encode() []byte {
	b := make([]byte, 0, 2+16+4+len(r.Issuer)+len(r.ID))
	kind := byte(0)
	if r.Kind == kindSubject {
		kind = 1
	}
	b = append(b, revFormat, kind)
	b = binary.BigEndian.AppendUint64(b, uint64(r.At))
	b = binary.BigEndian.AppendUint64(b, uint64(r.Until))
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.Issuer)))
	b = append(b, r.Issuer...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.ID)))
	return append(b, r.ID...)
}

// decodeRecord reads what encode wrote; false for anything else.
func decodeRecord(b []byte) (revRecord, bool) {
	var r revRecord
	if len(b) < 2+16+2 || b[0] != revFormat || b[1] > 1 {
		return r, false
	}
	r.Kind = kindSession
	if b[1] == 1 {
		r.Kind = kindSubject
	}
	r.At = int64(binary.BigEndian.Uint64(b[2:10]))
	r.Until = int64(binary.BigEndian.Uint64(b[10:18]))
	b = b[18:]
	var ok bool
	if r.Issuer, b, ok = lenString(b); !ok {
		return r, false
	}
	if r.ID, b, ok = lenString(b); !ok || len(b) != 0 {
		return r, false
	}
	return r, true
}

func lenString(b []byte) (string, []byte, bool) {
	if len(b) < 2 {
		return "", nil, false
	}
	n := int(binary.BigEndian.Uint16(b))
	if len(b) < 2+n {
		return "", nil, false
	}
	return string(b[2 : 2+n]), b[2+n:], true
}

// revMessage is a revocation on Options.Channel: the sealed value as stored, and its key (the
// MAC is bound to it). Receivers check both; nothing in the message is taken on trust.
type revMessage struct {
	Key   string `json:"key"`
	Value []byte `json:"val"`
}

// hash names the record in Redis. Each distinct revocation has its own key, so that two
// processes revoking the same subject at once do not overwrite each other (a read-modify-write
// of sealed values cannot be atomic): each process merges them in memory.
func (r *revRecord) hash() string {
	h := sha256.New()
	var n [8]byte
	for _, f := range []string{r.Kind, r.Issuer, r.ID} {
		binary.BigEndian.PutUint64(n[:], uint64(len(f)))
		h.Write(n[:])
		h.Write([]byte(f))
	}
	binary.BigEndian.PutUint64(n[:], uint64(r.At))
	h.Write(n[:])
	binary.BigEndian.PutUint64(n[:], uint64(r.Until))
	h.Write(n[:])
	return hex.EncodeToString(h.Sum(nil))
}

func (r *revRecord) check() error {
	switch {
	case r.Kind != kindSession && r.Kind != kindSubject:
		return fmt.Errorf("kind %q", r.Kind)
	case r.Issuer == "":
		return errors.New("issuer is empty")
	case r.ID == "":
		return errors.New("neither session id nor subject")
	case len(r.Issuer) > maxRevField || len(r.ID) > maxRevField:
		return fmt.Errorf("an identifier is longer than %d bytes", maxRevField)
	case r.Until <= 0:
		// A producer that forgot it would revoke nothing, silently.
		return errors.New("no Until")
	case r.Kind == kindSubject && r.At <= 0:
		return errors.New("a subject-wide revocation needs At")
	}
	return nil
}

func recordOf(r Revocation) (revRecord, error) {
	rec := revRecord{Kind: kindSession, Issuer: r.Issuer, ID: r.SessionID}
	if r.SessionID == "" {
		rec.Kind, rec.ID = kindSubject, r.Subject
	}
	if !r.At.IsZero() {
		rec.At = r.At.UnixMilli()
	}
	if !r.Until.IsZero() {
		rec.Until = r.Until.UnixMilli()
	}
	if err := rec.check(); err != nil {
		return rec, fmt.Errorf("cache: revoke: %w", err)
	}
	return rec, nil
}

// NewRevocations builds the store on c (whose Redis, if any, it shares). With Redis it loads
// the fleet's live revocations first, for at most LoadTimeout; when Redis does not answer it
// starts empty and loads once the cache's subscription is established. c may be nil (the
// process alone). One store per cache.
func NewRevocations(c *Cache, o RevocationOptions) (*Revocations, error) {
	return newRevocations(c, o, time.Now)
}

// newRevocations is NewRevocations on the clock now (tests move it).
func newRevocations(c *Cache, o RevocationOptions, now func() time.Time) (*Revocations, error) {
	if o.MaxEntries < 0 || o.MaxBytes < 0 || o.LoadTimeout < 0 {
		return nil, fmt.Errorf("cache: revocation options: MaxEntries %d, MaxBytes %d, LoadTimeout %s must be >= 0",
			o.MaxEntries, o.MaxBytes, o.LoadTimeout)
	}
	if o.MaxEntries == 0 {
		o.MaxEntries = defaultRevEntries
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = defaultRevBytes
	}
	if o.LoadTimeout == 0 {
		o.LoadTimeout = defaultRevLoadTimeout
	}
	s := &Revocations{c: c, opts: o, now: now, entries: map[revKey]*revEntry{},
		issuers: map[string]string{}, wake: make(chan struct{}, 1),
		waiters: map[string]*ackWait{}, ackOut: make(chan ackOut, revAckQueue)}
	parent := context.Background()
	if c != nil {
		parent = c.closeCtx
	}
	s.ctx, s.cancel = context.WithCancel(parent)
	if s.shared() {
		onRev, onAck, onSub := s.receive, s.acked, s.subscribed
		s.onRev, s.onAck, s.onSub = &onRev, &onAck, &onSub
		// Before the load: a revocation published while it runs is applied from its message.
		if !c.onRev.CompareAndSwap(nil, s.onRev) {
			s.cancel()
			return nil, errors.New("cache: revocations: this cache already carries a revocation store")
		}
		c.onSub.Store(s.onSub)
		c.onAck.Store(s.onAck)
		s.needLoad.Store(true)
		if c.redisUsable() {
			ctx, cancel := context.WithTimeout(s.ctx, o.LoadTimeout)
			start := time.Now()
			n, err := s.load(ctx)
			cancel()
			if err == nil {
				s.needLoad.Store(false)
				logger().Info("revocations loaded from redis", "count", n, "took_s", time.Since(start).Seconds())
			} else {
				logger().Warn("revocations: loading from redis failed at start; starting with what arrives "+
					"from now on and loading again in the background", "error", err)
			}
		} else {
			logger().Warn("revocations: redis unavailable at start; starting empty, loading once the " +
				"subscription is established")
		}
	}
	s.wg.Add(1)
	go s.run()
	if s.shared() {
		s.wg.Add(1)
		go s.sendAcks()
	}
	return s, nil
}

func (s *Revocations) shared() bool { return s.c != nil && s.c.rdb != nil }

// Revoke records r here at once, then stores it in Redis (until r.Until) and publishes it.
// An invalid r is an error and records nothing; one whose Until has passed records nothing.
// When Redis does not take it the error wraps ErrNotShared: this process refuses the session,
// the others do not until Redis is back and it is sent again.
func (s *Revocations) Revoke(ctx context.Context, r Revocation) error {
	rec, err := recordOf(r)
	if err != nil {
		return err
	}
	now := s.now().UnixMilli()
	if rec.Until <= now {
		return nil
	}
	s.apply(rec, now)
	if !s.shared() {
		revStoredLocal.Inc()
		return nil
	}
	// Registered before the publish: a fast peer's acknowledgement may come before it returns.
	// (Registered for every Revoke: a few map operations beside a Redis round trip.)
	key := s.c.revKey(rec.hash())
	w := &ackWait{notify: make(chan struct{}, 1)}
	s.waitMu.Lock()
	s.waiters[key] = w
	s.waitMu.Unlock()
	defer func() {
		s.waitMu.Lock()
		if s.waiters[key] == w {
			delete(s.waiters, key)
		}
		s.waitMu.Unlock()
	}()
	subscribers, err := s.share(ctx, rec)
	if err != nil {
		s.addPending(rec)
		revStoredPending.Inc()
		return fmt.Errorf("cache: revoke: %w: %w", ErrNotShared, err)
	}
	revStoredShared.Inc()
	if AwaitingPeers(ctx) {
		// Every subscriber but this process (whose own subscription counts) acknowledges.
		s.awaitAcks(ctx, w, subscribers-1)
	}
	return nil
}

type awaitPeersKey struct{}

// AwaitPeers marks ctx so that Revoke returns only once every other process subscribed to the
// fleet's channel said it holds the revocation, for at most 500 ms (a subscriber that never
// answers: an older runner; counted in revocations_ack_timeouts_total). A caller that answers
// someone on the strength of the revocation (the back-channel logout route) uses it: from its
// answer on, no process of the fleet serves the session. A caller revoking many in a row (the
// admin-event watcher catching up) does not, so a silent subscriber cannot slow it 500 ms each.
func AwaitPeers(ctx context.Context) context.Context {
	return context.WithValue(ctx, awaitPeersKey{}, true)
}

// AwaitingPeers reports whether ctx came from AwaitPeers.
func AwaitingPeers(ctx context.Context) bool { return ctx.Value(awaitPeersKey{}) != nil }

// awaitAcks waits until want peers acknowledged, for at most revAckTimeout. The
// acknowledgements are not sealed: a forged one only ends the wait early, which is how Revoke
// behaved without it (the peers apply the revocation a little later).
func (s *Revocations) awaitAcks(ctx context.Context, w *ackWait, want int64) {
	if want <= 0 {
		return
	}
	t := time.NewTimer(revAckTimeout)
	defer t.Stop()
	for w.n.Load() < want {
		select {
		case <-w.notify:
		case <-t.C:
			revAckTimeouts.Inc()
			return
		case <-ctx.Done():
			return
		case <-s.ctx.Done():
			return
		}
	}
}

// acked counts a peer's acknowledgement of one of this process's revocations. It runs on the
// cache's subscription goroutine.
func (s *Revocations) acked(key string) {
	s.waitMu.Lock()
	w := s.waiters[key]
	s.waitMu.Unlock()
	if w == nil {
		return
	}
	w.n.Add(1)
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

// sendAcks publishes the acknowledgements receive queues (receive runs on the subscription
// goroutine and does no I/O).
func (s *Revocations) sendAcks() {
	defer s.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case a := <-s.ackOut:
			msg, err := json.Marshal(invalidation{From: s.c.id, Ack: a.key, To: a.to})
			if err != nil {
				continue
			}
			octx, cancel := s.c.opCtx(s.ctx)
			err = s.c.rdb.Publish(octx, s.c.opts.Channel, msg).Err()
			cancel()
			s.c.observe(s.ctx, err)
		}
	}
}

// Revoked reports whether a token of that session and subject, issued at
// issuedAt, belongs to a revoked session. A zero issuedAt counts as issued
// before any subject-wide revocation.
func (s *Revocations) Revoked(issuer, sessionID, subject string, issuedAt time.Time) bool {
	if s.n.Load() == 0 {
		return false
	}
	now := s.now().UnixMilli()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if sessionID != "" {
		if e, ok := s.entries[revKey{kindSession, issuer, sessionID}]; ok && now < e.until {
			return true
		}
	}
	if subject != "" && s.nSubj.Load() > 0 {
		if e, ok := s.entries[revKey{kindSubject, issuer, subject}]; ok && now < e.until &&
			(issuedAt.IsZero() || issuedAt.UnixMilli() <= e.at) {
			return true
		}
	}
	return false
}

// Len is the number of revocations kept in this process.
func (s *Revocations) Len() int { return int(s.n.Load()) }

// Close stops the store's background work. Revocations not yet taken by Redis are dropped.
func (s *Revocations) Close() error {
	s.once.Do(func() {
		s.cancel()
		s.wg.Wait()
		if s.onRev != nil {
			s.c.onRev.CompareAndSwap(s.onRev, nil)
			s.c.onAck.CompareAndSwap(s.onAck, nil)
			s.c.onSub.CompareAndSwap(s.onSub, nil)
		}
	})
	return nil
}

// apply merges rec into the in-process copy and reports whether it changed it. A revocation of
// a key already held widens it (the later At, the later Until). A new one always gets a place:
// at the bound the entries that expire soonest make room for it.
func (s *Revocations) apply(rec revRecord, now int64) bool { return s.merge(rec, now, true) }

// merge is apply; with always false (a load from Redis, in no particular order) a new entry
// that would expire before every entry held is dropped instead when the copy is full, so that
// a load into a full copy keeps the revocations that expire last.
func (s *Revocations) merge(rec revRecord, now int64, always bool) bool {
	if rec.Until <= now {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := revKey{kind: rec.Kind, issuer: rec.Issuer, id: rec.ID}
	if e, ok := s.entries[k]; ok {
		changed := false
		if rec.At > e.at {
			e.at, changed = rec.At, true
		}
		if rec.Until > e.until {
			e.until, changed = rec.Until, true
			heap.Fix(&s.byUntil, e.idx)
		}
		return changed
	}
	if iss, ok := s.issuers[k.issuer]; ok {
		k.issuer = iss
	} else if len(s.issuers) < 16 {
		s.issuers[k.issuer] = k.issuer
	}
	e := &revEntry{key: k, at: rec.At, until: rec.Until}
	s.expireLocked(now)
	if !always && len(s.byUntil) > 0 && rec.Until <= s.byUntil[0].until &&
		(len(s.entries) >= s.opts.MaxEntries || s.bytes+e.size() > s.opts.MaxBytes) {
		s.noteEvicted(1)
		return false
	}
	evicted := 0
	for len(s.byUntil) > 0 && (len(s.entries) >= s.opts.MaxEntries || s.bytes+e.size() > s.opts.MaxBytes) {
		s.removeLocked(s.byUntil[0])
		evicted++
	}
	s.entries[k] = e
	if k.kind == kindSubject {
		s.nSubj.Add(1)
	}
	heap.Push(&s.byUntil, e)
	s.bytes += e.size()
	s.n.Store(int64(len(s.entries)))
	revEntries.Set(float64(len(s.entries)))
	if evicted > 0 {
		s.noteEvicted(evicted)
	}
	return true
}

func (s *Revocations) removeLocked(e *revEntry) {
	heap.Remove(&s.byUntil, e.idx)
	delete(s.entries, e.key)
	if e.key.kind == kindSubject {
		s.nSubj.Add(-1)
	}
	s.bytes -= e.size()
	s.n.Store(int64(len(s.entries)))
}

// expireLocked drops the entries whose Until has passed.
func (s *Revocations) expireLocked(now int64) {
	n := 0
	for len(s.byUntil) > 0 && s.byUntil[0].until <= now {
		s.removeLocked(s.byUntil[0])
		n++
	}
	if n > 0 {
		revExpired.Add(float64(n))
		revEntries.Set(float64(len(s.entries)))
	}
}

// sweep frees the memory of expired entries (Revoked already ignores them).
func (s *Revocations) sweep() {
	now := s.now().UnixMilli()
	s.mu.RLock()
	due := len(s.byUntil) > 0 && s.byUntil[0].until <= now
	s.mu.RUnlock()
	if due {
		s.mu.Lock()
		s.expireLocked(now)
		s.mu.Unlock()
	}
}

// revLogEvery bounds the log lines about evictions; the metric counts each.
const revLogEvery = time.Minute

func (s *Revocations) noteEvicted(n int) {
	revEvictedMemory.Add(float64(n))
	total := s.evicted.Add(int64(n))
	now := time.Now().UnixNano()
	last := s.lastLog.Load()
	if now-last < int64(revLogEvery) || !s.lastLog.CompareAndSwap(last, now) {
		return
	}
	s.evicted.Add(-total)
	logger().Warn("revocation store full: the revocations that expire soonest were dropped from this "+
		"process to make room (Redis keeps them); counted in apisix_identity_cache_revocations_evicted_total, "+
		"logged at most once a minute", "evicted", total, "max_entries", s.opts.MaxEntries, "max_bytes", s.opts.MaxBytes)
}

// share stores rec in Redis until its Until and publishes it, in one round trip.
func (s *Revocations) share(ctx context.Context, rec revRecord) (int64, error) {
	c := s.c
	if c.closed.Load() {
		return 0, errors.New("cache closed")
	}
	if !c.redisUsable() {
		return 0, errors.New("redis is down")
	}
	ttl := time.Duration(rec.Until-s.now().UnixMilli()) * time.Millisecond
	if ttl < time.Millisecond {
		return 0, nil
	}
	key := c.revKey(rec.hash())
	sealed := c.seal(key, Entry{Value: rec.encode(), FetchedAt: fetchTime()})
	msg, err := json.Marshal(invalidation{From: c.id, Rev: &revMessage{Key: key, Value: sealed}})
	if err != nil {
		return 0, err
	}
	octx, cancel := c.opCtx(ctx)
	defer cancel()
	var pub *redis.IntCmd
	_, err = c.rdb.Pipelined(octx, func(p redis.Pipeliner) error {
		p.Set(octx, key, sealed, ttl)
		pub = p.Publish(octx, c.opts.Channel, msg)
		return nil
	})
	c.observe(ctx, err)
	if err != nil {
		return 0, err
	}
	return pub.Val(), nil
}

func (s *Revocations) addPending(rec revRecord) {
	s.pendMu.Lock()
	defer s.pendMu.Unlock()
	if len(s.pending) >= maxPending {
		// The oldest waiting revocation goes: it holds here still, only the fleet misses it.
		s.pending = s.pending[1:]
		revEvictedPending.Inc()
	}
	s.pending = append(s.pending, rec)
}

// flushPending stores and publishes what Redis did not take, until one fails.
func (s *Revocations) flushPending() {
	s.pendMu.Lock()
	todo := s.pending
	s.pending = nil
	s.pendMu.Unlock()
	now := s.now().UnixMilli()
	for i, rec := range todo {
		if rec.Until <= now {
			continue
		}
		if _, err := s.share(s.ctx, rec); err != nil {
			s.pendMu.Lock()
			s.pending = append(todo[i:len(todo):len(todo)], s.pending...)
			if len(s.pending) > maxPending {
				s.pending = s.pending[len(s.pending)-maxPending:]
			}
			s.pendMu.Unlock()
			return
		}
		revStoredShared.Inc()
	}
	if len(todo) > 0 {
		logger().Warn("revocations kept in this process while redis was down are now shared", "count", len(todo))
	}
}

func (s *Revocations) pendingLen() int {
	s.pendMu.Lock()
	defer s.pendMu.Unlock()
	return len(s.pending)
}

// receive applies a peer's revocation from the channel. It runs on the cache's subscription
// goroutine: no I/O.
func (s *Revocations) receive(from string, m *revMessage) {
	if hook := s.receiveHook.Load(); hook != nil {
		(*hook)()
	}
	rec, ok := s.open(m.Key, m.Value)
	if !ok {
		return
	}
	if s.apply(rec, s.now().UnixMilli()) {
		revAppliedMessage.Inc()
	}
	// Held now (applied, or already held): the publisher may answer its caller.
	select {
	case s.ackOut <- ackOut{to: from, key: m.Key}:
	default: // the publisher's wait ends at its timeout
	}
}

// subscribed runs on the cache's subscription goroutine when the subscription is established
// after a break or a late start: messages may have been missed, so everything is loaded again.
func (s *Revocations) subscribed() {
	s.needLoad.Store(true)
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// open checks a value read from Redis or the channel under key: sealed with the fleet's secret
// for that key, a valid record, and the record's own key (no sealed value of another kind
// counts as a revocation). Refusals are counted and logged like the cache's.
func (s *Revocations) open(key string, b []byte) (revRecord, bool) {
	var rec revRecord
	if !strings.HasPrefix(key, s.c.revKey("")) {
		s.c.reject(rejectFormat, key)
		return rec, false
	}
	e, ok := s.c.open(key, b)
	if !ok {
		return rec, false
	}
	rec, ok = decodeRecord(e.Value)
	if !ok || rec.check() != nil || s.c.revKey(rec.hash()) != key {
		s.c.reject(rejectFormat, key)
		return rec, false
	}
	return rec, true
}

// load reads every live revocation from Redis (SCAN over the rev: keys, on each master of a
// Cluster) and merges them in. Entries Redis no longer holds are kept here until their Until:
// deleting a key in Redis does not lift a revocation a process already holds.
func (s *Revocations) load(ctx context.Context) (int, error) {
	match := globEscape(s.c.revKey("")) + "*"
	n := 0
	scan := func(ctx context.Context, rc redis.UniversalClient) error {
		var cursor uint64
		for {
			octx, cancel := s.c.opCtx(ctx)
			keys, next, err := rc.Scan(octx, cursor, match, revScanCount).Result()
			cancel()
			s.c.observe(ctx, err)
			if err != nil {
				return fmt.Errorf("scan: %w", err)
			}
			if len(keys) > 0 {
				octx, cancel := s.c.opCtx(ctx)
				cmds, err := rc.Pipelined(octx, func(p redis.Pipeliner) error {
					for _, k := range keys {
						p.Get(octx, k)
					}
					return nil
				})
				cancel()
				if errors.Is(err, redis.Nil) {
					err = nil // a key expired between SCAN and GET
				}
				s.c.observe(ctx, err)
				if err != nil {
					return fmt.Errorf("get: %w", err)
				}
				now := s.now().UnixMilli()
				for i, cmd := range cmds {
					b, err := cmd.(*redis.StringCmd).Bytes()
					if err != nil {
						continue
					}
					if rec, ok := s.open(keys[i], b); ok && s.merge(rec, now, false) {
						revAppliedLoad.Inc()
						n++
					}
				}
			}
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	}
	var err error
	if cc, ok := s.c.rdb.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return scan(ctx, m) })
	} else {
		err = scan(ctx, s.c.rdb)
	}
	if err != nil {
		return n, fmt.Errorf("cache: load revocations: %w", err)
	}
	return n, nil
}

// globEscape quotes the SCAN MATCH pattern characters of a key prefix.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// run sweeps expired entries every second and, with Redis, sends what Redis did not take and
// loads the fleet's revocations whenever the subscription was (re)established.
func (s *Revocations) run() {
	defer s.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	backoff, next := time.Second, time.Time{}
	failing := false
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.wake:
			next = time.Time{}
		case <-t.C:
		}
		s.sweep()
		if !s.shared() || !s.c.redisUsable() {
			continue
		}
		s.flushPending()
		if !s.needLoad.Load() || time.Now().Before(next) {
			continue
		}
		// Cleared first: a resubscription during the load asks for another.
		s.needLoad.Store(false)
		ctx, cancel := context.WithTimeout(s.ctx, revReloadTimeout)
		start := time.Now()
		n, err := s.load(ctx)
		cancel()
		if s.ctx.Err() != nil {
			return
		}
		if err != nil {
			s.needLoad.Store(true)
			next = time.Now().Add(backoff)
			backoff = min(backoff*2, 30*time.Second)
			if !failing {
				failing = true
				logger().Warn("revocations: loading from redis failed; retrying", "error", err)
			}
			continue
		}
		backoff = time.Second
		// A reload is routine after any resubscription (whose loss and return are already
		// logged): only the end of a failing spell is a warning, at the level it began.
		if failing {
			failing = false
			logger().Warn("revocations: loading from redis works again", "new", n,
				"took_s", time.Since(start).Seconds())
		} else {
			logger().Info("revocations loaded from redis after (re)subscription", "new", n,
				"took_s", time.Since(start).Seconds())
		}
	}
}
