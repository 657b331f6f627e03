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

// apisix-identity-runner patch: the request's deadline without a timer
// (PATCHES.md, patch 7). The whole file is the patch.
//
// v0.5.0 gave every request context.WithTimeout(56s): a timer armed and
// stopped on every request, and three allocations, though on a plugin's
// hit path nothing ever waits on it. requestContext keeps the same
// deadline and the same end (canceled when the request ends) and arms the
// timer only when something asks for Done (a plugin about to wait, or a
// context derived from it).

package http

import (
	"context"
	"sync"
	"time"
)

// requestTimeout is v0.5.0's: APISIX has an implicit 60s timeout, so
// plugins can still answer before it.
const requestTimeout = 56 * time.Second

// requestContext is a request's root context: Deadline is fixed when the
// request is created; Done, Err and the derived contexts behave as those of
// context.WithDeadline(context.Background(), deadline) canceled when the
// request ends, which is what they read once Done was asked for. One per
// request, never pooled: a goroutine may keep it past the request.
type requestContext struct {
	deadline time.Time

	mu     sync.Mutex
	timed  context.Context // made on the first Done
	cancel context.CancelFunc
	ended  error // the Err the request's end left, before any Done
}

func newRequestContext(now time.Time) *requestContext {
	return &requestContext{deadline: now.Add(requestTimeout)}
}

func (c *requestContext) Deadline() (time.Time, bool) { return c.deadline, true }

func (c *requestContext) Value(interface{}) interface{} { return nil }

func (c *requestContext) Done() <-chan struct{} { return c.arm().Done() }

// arm makes the timed context on first use; one that ended already is made
// canceled (or expired, as the request ended past its deadline).
func (c *requestContext) arm() context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timed == nil {
		c.timed, c.cancel = context.WithDeadline(context.Background(), c.deadline)
		if c.ended != nil {
			c.cancel()
		}
	}
	return c.timed
}

func (c *requestContext) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.timed != nil:
		return c.timed.Err()
	case c.ended != nil:
		return c.ended
	case !time.Now().Before(c.deadline):
		return context.DeadlineExceeded
	}
	return nil
}

// AfterFunc lets context.WithCancel and the like hook a derived context to
// this one without a goroutine each (context's afterFuncer).
func (c *requestContext) AfterFunc(f func()) func() bool {
	return context.AfterFunc(c.arm(), f)
}

// end is the request's end: what v0.5.0's cancel did.
func (c *requestContext) end() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timed != nil {
		c.cancel()
		return
	}
	if c.ended == nil {
		c.ended = context.Canceled
		if !time.Now().Before(c.deadline) {
			c.ended = context.DeadlineExceeded
		}
	}
}

func (c *requestContext) String() string { return "apisix request context" }
