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
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRequestContextAsWithTimeout: the request's context keeps v0.5.0's
// deadline and end (context.WithTimeout(56s), canceled when the request
// ends), whether Done is asked for before the end, after it, or never.
func TestRequestContextAsWithTimeout(t *testing.T) {
	before := time.Now()
	r := CreateRequest(buildReq(reqOpt{}))
	ctx := r.Context()
	d, ok := ctx.Deadline()
	require.True(t, ok)
	assert.False(t, d.Before(before.Add(56*time.Second)))
	assert.True(t, d.Before(time.Now().Add(56*time.Second+time.Millisecond)))
	assert.NoError(t, ctx.Err())
	child, stop := context.WithCancel(context.WithValue(ctx, struct{}{}, 1))
	defer stop()
	done := ctx.Done()
	select {
	case <-done:
		t.Fatal("done before the request ended")
	default:
	}
	ReuseRequest(r)
	<-done
	<-child.Done()
	assert.ErrorIs(t, ctx.Err(), context.Canceled)
	assert.ErrorIs(t, child.Err(), context.Canceled)

	// Done never asked for while the request ran.
	r = CreateRequest(buildReq(reqOpt{}))
	ctx = r.Context()
	ReuseRequest(r)
	assert.ErrorIs(t, ctx.Err(), context.Canceled)
	<-ctx.Done()
	child, stop = context.WithCancel(ctx)
	defer stop()
	<-child.Done()
	assert.ErrorIs(t, child.Err(), context.Canceled)
}

// TestRequestContextExpires: at the deadline Done closes with
// DeadlineExceeded, as WithTimeout's timer does; a request that ends past
// its deadline leaves DeadlineExceeded too.
func TestRequestContextExpires(t *testing.T) {
	c := newRequestContext(time.Now().Add(-requestTimeout + 20*time.Millisecond))
	assert.NoError(t, c.Err())
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("deadline passed, Done still open")
	}
	assert.ErrorIs(t, c.Err(), context.DeadlineExceeded)
	c.end()
	assert.ErrorIs(t, c.Err(), context.DeadlineExceeded)

	c = newRequestContext(time.Now().Add(-requestTimeout - time.Millisecond))
	assert.ErrorIs(t, c.Err(), context.DeadlineExceeded)
	c.end()
	<-c.Done()
	assert.ErrorIs(t, c.Err(), context.DeadlineExceeded)
}
