package cache

import (
	"context"
	"sync"
	"time"
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
	// MaxEntries bounds the revocations kept in process. Default 200 000.
	MaxEntries int
}

// Revocations is the fleet's revocation store: kept in process, and with
// Redis stored and published so that every process refuses a session one of
// them revoked.
//
// This first version keeps revocations in process only; the Redis-backed,
// bounded store replaces its internals without changing the API.
type Revocations struct {
	mu       sync.RWMutex
	sessions map[[2]string]time.Time    // (issuer, sid) -> until
	subjects map[[2]string][2]time.Time // (issuer, sub) -> (at, until)
	now      func() time.Time
	opts     RevocationOptions
}

var _ Revoker = (*Revocations)(nil)

// NewRevocations builds the store on c (whose Redis, if any, it shares).
func NewRevocations(c *Cache, o RevocationOptions) (*Revocations, error) {
	if o.MaxEntries == 0 {
		o.MaxEntries = 200000
	}
	return &Revocations{sessions: map[[2]string]time.Time{}, subjects: map[[2]string][2]time.Time{},
		now: time.Now, opts: o}, nil
}

// Revoke records r.
func (s *Revocations) Revoke(_ context.Context, r Revocation) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.SessionID != "" {
		if until := s.sessions[[2]string{r.Issuer, r.SessionID}]; r.Until.After(until) {
			s.sessions[[2]string{r.Issuer, r.SessionID}] = r.Until
		}
		return nil
	}
	cur := s.subjects[[2]string{r.Issuer, r.Subject}]
	if r.At.After(cur[0]) {
		cur[0] = r.At
	}
	if r.Until.After(cur[1]) {
		cur[1] = r.Until
	}
	s.subjects[[2]string{r.Issuer, r.Subject}] = cur
	return nil
}

// Revoked reports whether a token of that session and subject, issued at
// issuedAt, belongs to a revoked session.
func (s *Revocations) Revoked(issuer, sessionID, subject string, issuedAt time.Time) bool {
	now := s.now()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if sessionID != "" {
		if until, ok := s.sessions[[2]string{issuer, sessionID}]; ok && now.Before(until) {
			return true
		}
	}
	if v, ok := s.subjects[[2]string{issuer, subject}]; ok && now.Before(v[1]) && !issuedAt.After(v[0]) {
		return true
	}
	return false
}

// Close stops the store's background work.
func (s *Revocations) Close() error { return nil }
