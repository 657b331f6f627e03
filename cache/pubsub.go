package cache

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// invalidation is the message on Options.Channel.
type invalidation struct {
	From string   `json:"from"` // Cache.id of the sender
	Keys []string `json:"keys"`
	// Rev carries a revocation (revoke.go) instead of keys. Runners of a version before it see a
	// message without keys, which they ignore.
	Rev *revMessage `json:"rev,omitempty"`
	// Ack says that From holds the revocation stored under this key, to the process To that
	// published it (it waits for its peers before Revoke returns). Older runners ignore it.
	Ack string `json:"ack,omitempty"`
	To  string `json:"to,omitempty"`
}

// Invalidate drops keys from this process's tier and from Redis, and publishes them so that every
// other process drops its in-process copy. Loads of these keys already running do not store their
// result here. A Redis failure is returned: the keys are gone here, but other processes may keep
// their copies up to LocalTTL, and Redis its own until the next fill.
func (c *Cache) Invalidate(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	c.dropLocal(keys)
	if c.rdb == nil || c.closed.Load() {
		return nil
	}
	msg, err := json.Marshal(invalidation{From: c.id, Keys: keys})
	if err != nil {
		return fmt.Errorf("cache: invalidate: %w", err)
	}
	octx, cancel := c.opCtx(ctx)
	defer cancel()
	// One DEL per key: in a Cluster the keys live in different slots.
	_, err = c.rdb.Pipelined(octx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.Del(octx, c.valueKey(k))
		}
		p.Publish(octx, c.opts.Channel, msg)
		return nil
	})
	c.observe(ctx, err)
	// Again: a read of Redis between the first drop and the DEL found the
	// old value and put it back here, where it would be served for LocalTTL.
	c.dropLocal(keys)
	if err != nil {
		return fmt.Errorf("cache: invalidate %d keys: %w", len(keys), err)
	}
	return nil
}

// subscribeReceiveTimeout bounds one wait for a message; when it passes quietly the loop pings to
// find a dead connection.
const subscribeReceiveTimeout = 5 * time.Second

// subscribe receives invalidations until Close. Whenever the subscription is (re)established after
// a break, invalidations may have been missed, so the in-process tier is flushed.
func (c *Cache) subscribe(confirmed bool) {
	defer c.wg.Done()
	ctx := c.closeCtx
	backoff := 50 * time.Millisecond
	pinged := false
	broken := false
	ever := confirmed // a subscription was established at least once
	for ctx.Err() == nil {
		c.psMu.Lock()
		if c.ps == nil && !c.closed.Load() {
			c.ps = c.rdb.Subscribe(ctx, c.opts.Channel)
		}
		ps := c.ps
		c.psMu.Unlock()
		if ps == nil {
			return
		}

		msg, err := ps.ReceiveTimeout(ctx, subscribeReceiveTimeout)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if isTimeout(err) && !pinged && confirmed {
				pinged = true
				if perr := ps.Ping(ctx); perr == nil {
					continue
				}
			}
			if classify(err) == failTimeout {
				redisTimeouts.Inc()
			} else {
				redisConnErrors.Inc()
			}
			if !broken {
				broken = true
				if ever {
					logger().Warn("redis invalidation subscription lost; reconnecting", "error", err)
				}
			}
			c.psMu.Lock()
			_ = ps.Close()
			c.ps = nil
			c.psMu.Unlock()
			confirmed, pinged = false, false
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(backoff*2, time.Second)
			continue
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind != "subscribe" {
				continue
			}
			backoff = 50 * time.Millisecond
			if !confirmed {
				// Revocations published meanwhile were missed too: they are loaded again.
				if fn := c.onSub.Load(); fn != nil {
					(*fn)()
				}
				// (Re)subscribed after a break or a late start: flush what may be out of date.
				if n := c.local.len(); n > 0 {
					flushesTotal.Inc()
					c.flushLocal()
				}
				if ever {
					// Warn, as the loss was: the operator sees the end of what was reported.
					logger().Warn("redis invalidation subscription restored; in-process tier flushed")
				}
			}
			confirmed, broken, ever = true, false, true
		case *redis.Message:
			c.receive(m.Payload)
		}
	}
}

func (c *Cache) receive(payload string) {
	var inv invalidation
	if err := json.Unmarshal([]byte(payload), &inv); err != nil || inv.From == c.id {
		return
	}
	if inv.Rev != nil {
		if fn := c.onRev.Load(); fn != nil {
			(*fn)(inv.From, inv.Rev)
		}
		return
	}
	if inv.Ack != "" {
		if fn := c.onAck.Load(); fn != nil && inv.To == c.id {
			(*fn)(inv.Ack)
		}
		return
	}
	if len(inv.Keys) == 0 {
		return
	}
	invalidationsTotal.Inc()
	c.dropLocal(inv.Keys)
	if fn := c.onInv.Load(); fn != nil {
		(*fn)(inv.Keys)
	}
}
