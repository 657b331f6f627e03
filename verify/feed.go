package verify

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/redis/go-redis/v9"
)

// The change feed: orgsync appends one entry per membership change it sees to a Redis stream,
// signed with the assertion's key. Whoever can write Redis can add entries to that stream, so a
// reader applies only entries that verify with the gateway's key set (the one the Verifier
// already holds), and skips the others.
const (
	// DefaultFeedStream is the stream's key under the runner's default key prefix.
	DefaultFeedStream = "apisix-identity:feed:orgsync:changes"
	// FeedType is the typ header of an entry's signature (the runner's assertion.FeedType).
	FeedType = "orgsync-change+jws"
	// FeedMaxSkew is how far an entry's signed time ("at") may lie from the time of its stream id
	// (Redis's clock when it was appended). Redis ids only grow, so an old genuine entry appended
	// again gets a new id, far from its own time, and is refused: a Redis writer can replay only
	// what was signed in the last minute. The runner writes at, then appends at once; the minute
	// covers the skew between its clock and Redis's.
	FeedMaxSkew = time.Minute
	// maxFeedSig bounds a signature before anything parses it.
	maxFeedSig = 64 << 10
)

// Feed field names (orgsync.FeedFields, orgsync.FeedSigField and the payload's stream claim).
const (
	feedSig    = "sig"
	feedStream = "stream"
)

// FeedReason says why a feed entry was refused.
type FeedReason string

const (
	FeedUnsigned        FeedReason = "unsigned"         // no sig field
	FeedMalformed       FeedReason = "malformed"        // sig, payload or fields unreadable
	FeedAlgorithm       FeedReason = "algorithm"        // not ES256 or EdDSA, or not the key's
	FeedWrongType       FeedReason = "wrong_type"       // not a feed signature (an assertion, say)
	FeedUnknownKey      FeedReason = "unknown_key"      // kid not in the key set
	FeedSignature       FeedReason = "signature"        // the signature does not verify
	FeedWrongStream     FeedReason = "wrong_stream"     // signed for another stream
	FeedAltered         FeedReason = "altered"          // the entry's fields are not the signed ones
	FeedReplayed        FeedReason = "replayed"         // its signed time is far from its stream id's
	FeedKeysUnavailable FeedReason = "keys_unavailable" // the key set could not be fetched: retry later
)

// FeedError is a refused feed entry.
type FeedError struct {
	Reason FeedReason
	Err    error
}

func (e *FeedError) Error() string { return fmt.Sprintf("feed entry %s: %v", e.Reason, e.Err) }

func (e *FeedError) Unwrap() error { return e.Err }

func feedRefuse(r FeedReason, format string, args ...any) *FeedError {
	return &FeedError{Reason: r, Err: fmt.Errorf(format, args...)}
}

// Change is one verified membership change.
type Change struct {
	ID      string // stream id ("<unix ms>-<seq>"), increasing
	User    string // Keycloak user id (the assertion's sub)
	Added   []string
	Removed []string
	Source  string // where orgsync saw the change ("keycloak")
	At      time.Time
}

// VerifyFeedEntry checks one entry of the stream streamKey: its sig is a compact JWS of typ
// FeedType by a key of v's key set, over exactly the entry's other fields and streamKey, and its
// signed time lies within FeedMaxSkew of the time of its id. Errors are *FeedError.
func (v *Verifier) VerifyFeedEntry(ctx context.Context, streamKey, id string, fields map[string]string) (Change, error) {
	sig, ok := fields[feedSig]
	if !ok || sig == "" {
		return Change{}, feedRefuse(FeedUnsigned, "no %s field", feedSig)
	}
	if len(sig) > maxFeedSig {
		return Change{}, feedRefuse(FeedMalformed, "signature of %d bytes", len(sig))
	}
	hdr, err := parseHeader(sig)
	if err != nil {
		return Change{}, &FeedError{Reason: FeedMalformed, Err: err}
	}
	if typ, err := headerType(sig); err != nil || typ != FeedType {
		return Change{}, feedRefuse(FeedWrongType, "typ %q, want %q", typ, FeedType)
	}
	if hdr.Alg != algES256 && hdr.Alg != algEdDSA {
		return Change{}, feedRefuse(FeedAlgorithm, "algorithm %q is not accepted (ES256 or EdDSA only)", hdr.Alg)
	}
	if hdr.Kid == "" {
		return Change{}, feedRefuse(FeedUnknownKey, "no kid in the header")
	}
	k, err := v.keys.lookup(ctx, hdr.Kid)
	if err != nil {
		if ReasonOf(err) == ReasonKeysUnavailable {
			return Change{}, &FeedError{Reason: FeedKeysUnavailable, Err: err}
		}
		return Change{}, &FeedError{Reason: FeedUnknownKey, Err: err}
	}
	if k.alg != hdr.Alg {
		return Change{}, feedRefuse(FeedAlgorithm, "key %q is an %s key, the header says %s", hdr.Kid, k.alg, hdr.Alg)
	}
	jws, err := jose.ParseSignedCompact(sig, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(hdr.Alg)})
	if err != nil {
		return Change{}, &FeedError{Reason: FeedMalformed, Err: err}
	}
	payload, err := jws.Verify(k.public)
	if err != nil {
		return Change{}, feedRefuse(FeedSignature, "signature does not verify with key %q", hdr.Kid)
	}
	var signed map[string]string
	if err := json.Unmarshal(payload, &signed); err != nil || signed == nil {
		return Change{}, feedRefuse(FeedMalformed, "payload is not a JSON object of strings")
	}
	if got := signed[feedStream]; got != streamKey {
		return Change{}, feedRefuse(FeedWrongStream, "signed for stream %q", got)
	}
	delete(signed, feedStream)
	// Exactly the signed fields: none changed, none added beside them, none left out.
	if len(signed) != len(fields)-1 {
		return Change{}, feedRefuse(FeedAltered, "%d fields signed, %d in the entry", len(signed), len(fields)-1)
	}
	for name, value := range signed {
		if got, ok := fields[name]; !ok || got != value {
			return Change{}, feedRefuse(FeedAltered, "field %q is not the signed one", name)
		}
	}
	c, err := parseChange(id, signed)
	if err != nil {
		return Change{}, &FeedError{Reason: FeedMalformed, Err: err}
	}
	idTime, err := streamIDTime(id)
	if err != nil {
		return Change{}, &FeedError{Reason: FeedMalformed, Err: err}
	}
	if d := idTime.Sub(c.At); d > FeedMaxSkew || d < -FeedMaxSkew {
		return Change{}, feedRefuse(FeedReplayed, "signed at %s, appended at %s", c.At.Format(time.RFC3339), idTime.Format(time.RFC3339))
	}
	return c, nil
}

// headerType reads the typ header parameter (parseHeader has checked the header's form).
func headerType(token string) (string, error) {
	seg, _, _ := strings.Cut(token, ".")
	raw, err := base64.RawURLEncoding.Strict().DecodeString(seg)
	if err != nil {
		return "", err
	}
	var h struct {
		Typ string `json:"typ"`
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		return "", err
	}
	return h.Typ, nil
}

func parseChange(id string, f map[string]string) (Change, error) {
	c := Change{ID: id, User: f["user"], Source: f["source"]}
	if c.User == "" {
		return Change{}, errors.New("no user")
	}
	for name, dst := range map[string]*[]string{"added": &c.Added, "removed": &c.Removed} {
		if err := json.Unmarshal([]byte(f[name]), dst); err != nil {
			return Change{}, fmt.Errorf("%s is not a JSON list", name)
		}
		for _, a := range *dst {
			if a == "" {
				return Change{}, fmt.Errorf("%s holds an empty alias", name)
			}
		}
	}
	at, err := time.Parse(time.RFC3339Nano, f["at"])
	if err != nil {
		return Change{}, errors.New("at is not an RFC 3339 time")
	}
	c.At = at
	return c, nil
}

func streamIDTime(id string) (time.Time, error) {
	ms, _, _ := strings.Cut(id, "-")
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("stream id %q", id)
	}
	return time.UnixMilli(n), nil
}

// FeedConfig configures a FeedReader.
type FeedConfig struct {
	// Redis is the Redis the runners share (REDIS_URL). Required.
	Redis redis.UniversalClient
	// Verifier's key set (the gateway's assertion keys) verifies the entries. Required.
	Verifier *Verifier
	// Stream is the stream's key. Default DefaultFeedStream (the runner's default key prefix).
	Stream string
	// After is the stream id to read after: the last one handled, kept by the app. Default "0-0":
	// every entry the stream still holds. Keep it where a Redis writer cannot move it back (the
	// app's database): one who can may make the reader replay the stream's genuine entries.
	After string
	// Logger receives one line a minute at most about skipped entries. Default slog.Default().
	Logger *slog.Logger
	// OnSkip, if set, is called for each skipped entry (for a metric of the app's own).
	OnSkip func(id string, err *FeedError)
}

// FeedReader reads the change feed in order and returns the entries that verify. Forged,
// unsigned, altered and replayed entries are skipped: counted (Skipped), passed to OnSkip and
// logged at most once a minute. Use it from one goroutine.
type FeedReader struct {
	cfg     FeedConfig
	last    string
	skipped atomic.Uint64
	logMu   sync.Mutex
	logged  time.Time
}

// NewFeedReader checks cfg.
func NewFeedReader(cfg FeedConfig) (*FeedReader, error) {
	if cfg.Redis == nil || cfg.Verifier == nil {
		return nil, errors.New("verify: FeedConfig needs Redis and Verifier")
	}
	if cfg.Stream == "" {
		cfg.Stream = DefaultFeedStream
	}
	if cfg.After == "" {
		cfg.After = "0-0"
	}
	if _, err := streamIDTime(cfg.After); err != nil {
		return nil, fmt.Errorf("verify: FeedConfig.After: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &FeedReader{cfg: cfg, last: cfg.After}, nil
}

// Position is the id of the last entry read (returned or skipped).
func (r *FeedReader) Position() string { return r.last }

// Skipped counts the entries refused so far.
func (r *FeedReader) Skipped() uint64 { return r.skipped.Load() }

// Read returns up to count verified changes after Position, waiting up to block for one when
// there is none (0: no wait). Position moves past every entry read, skipped ones included. When
// the key set cannot be fetched it stops before that entry and returns the error with the
// changes verified so far: the entry is read again on the next call.
func (r *FeedReader) Read(ctx context.Context, count int64, block time.Duration) ([]Change, error) {
	if block <= 0 {
		block = -1 // go-redis: no BLOCK argument
	}
	res, err := r.cfg.Redis.XRead(ctx, &redis.XReadArgs{Streams: []string{r.cfg.Stream, r.last}, Count: count, Block: block}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("verify: reading %s: %w", r.cfg.Stream, err)
	}
	var out []Change
	for _, s := range res {
		for _, m := range s.Messages {
			fields := make(map[string]string, len(m.Values))
			for k, v := range m.Values {
				s, ok := v.(string)
				if !ok {
					s = fmt.Sprint(v)
				}
				fields[k] = s
			}
			c, err := r.cfg.Verifier.VerifyFeedEntry(ctx, r.cfg.Stream, m.ID, fields)
			var ferr *FeedError
			switch {
			case err == nil:
				out = append(out, c)
			case errors.As(err, &ferr) && ferr.Reason == FeedKeysUnavailable:
				return out, err
			default:
				errors.As(err, &ferr)
				r.skip(m.ID, ferr)
			}
			r.last = m.ID
		}
	}
	return out, nil
}

func (r *FeedReader) skip(id string, err *FeedError) {
	r.skipped.Add(1)
	if r.cfg.OnSkip != nil {
		r.cfg.OnSkip(id, err)
	}
	r.logMu.Lock()
	defer r.logMu.Unlock()
	if now := time.Now(); now.Sub(r.logged) >= time.Minute {
		r.logged = now
		// The reason and the id only: the entry's content is attacker input.
		r.cfg.Logger.Warn("change feed entry skipped: it does not verify with the gateway's key set "+
			"(written into Redis by something other than the runner); further ones are counted, logged once a minute",
			"stream", r.cfg.Stream, "id", id, "reason", string(err.Reason), "skipped", r.skipped.Load())
	}
}
