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

package server

import (
	"bytes"
	"encoding/binary"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	hrc "github.com/api7/ext-plugin-proto/go/A6/HTTPReqCall"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apache/apisix-go-plugin-runner/internal/plugin"
	"github.com/apache/apisix-go-plugin-runner/internal/util"
)

func TestGetSockAddr(t *testing.T) {
	os.Unsetenv(SockAddrEnv)
	assert.Equal(t, "", getSockAddr())

	os.Setenv(SockAddrEnv, "unix:/tmp/x.sock")
	assert.Equal(t, "/tmp/x.sock", getSockAddr())
}

func TestGetConfCacheTTL(t *testing.T) {
	os.Unsetenv(ConfCacheTTLEnv)
	assert.Equal(t, 4320*time.Second, getConfCacheTTL())

	os.Setenv(ConfCacheTTLEnv, "12")
	assert.Equal(t, 14*time.Second, getConfCacheTTL())

	os.Setenv(ConfCacheTTLEnv, "1a")
	assert.Equal(t, time.Duration(0), getConfCacheTTL())
}

func TestDispatchRPC_UnknownType(t *testing.T) {
	bd, ty := dispatchRPC(126, []byte(""), nil)
	err := UnknownType{126}
	expectBd := ReportError(err)
	assert.Equal(t, expectBd.FinishedBytes(), bd.FinishedBytes())
	assert.Equal(t, ty, byte(util.RPCError))
}

func TestDispatchRPC_KnownType(t *testing.T) {
	bd := util.GetBuilder()
	hrc.ReqStart(bd)
	hrc.ReqAddConfToken(bd, 1)
	r := hrc.ReqEnd(bd)
	bd.Finish(r)

	_, ty := dispatchRPC(util.RPCHTTPReqCall, bd.FinishedBytes(), nil)
	assert.Equal(t, ty, byte(util.RPCError))
}

func TestDispatchRPC_OutTooLarge(t *testing.T) {
	builder := util.GetBuilder()
	bodyVec := builder.CreateByteVector(make([]byte, util.MaxDataSize+1))
	hrc.StopStart(builder)
	hrc.StopAddBody(builder, bodyVec)
	stop := hrc.StopEnd(builder)

	hrc.RespStart(builder)
	hrc.RespAddId(builder, 1)
	hrc.RespAddActionType(builder, hrc.ActionStop)
	hrc.RespAddAction(builder, stop)
	res := hrc.RespEnd(builder)
	builder.Finish(res)
}

func TestRun(t *testing.T) {
	path := "/tmp/x.sock"
	addr := "unix:" + path
	os.Setenv(SockAddrEnv, addr)
	os.Setenv(ConfCacheTTLEnv, "60")

	// apisix-identity-runner patch: the test waits for Run to return (below), so
	// Run's writes happen before the next test's and the socket is gone by then.
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		Run(Options{})
	}()

	// apisix-identity-runner patch: flaky upstream test. v0.5.0 slept 100 ms and
	// then read the socket's mode; under -race on a loaded 2-core CI machine Run
	// had not listened yet, Stat failed and the nil FileInfo panicked. Wait
	// (bounded) for the socket and its mode instead.
	stat := waitForSocketMode(t, path, 0766, 10*time.Second)
	assert.Equal(t, os.FileMode(0766), stat.Mode().Perm())

	header := make([]byte, 4)
	binary.BigEndian.PutUint32(header, uint32(32))
	header[0] = 1
	cases := []struct {
		header []byte
	}{
		// dad header
		{[]byte("a")},
		// header without body
		{header},
		// header without body truncated
		{append(header, 32)},
		// header with bad body
		{append(header, bytes.Repeat([]byte{1, 2}, 16)...)},
	}

	for _, c := range cases {
		conn, err := net.DialTimeout("unix", addr[len("unix:"):], 1*time.Second)
		assert.NotNil(t, conn, err)
		defer conn.Close()
		conn.Write(c.header)
	}

	syscall.Kill(syscall.Getpid(), syscall.SIGINT)
	// apisix-identity-runner patch: the same race at shutdown (v0.5.0 slept 10 ms
	// and never waited for Run).
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		require.Fail(t, "Run did not return within 10 s of SIGINT")
	}

	_, err := os.Stat(path)
	assert.True(t, os.IsNotExist(err), "socket %s still there after Run returned: %v", path, err)
}

// waitForSocketMode polls until path exists with the given permission bits, and
// fails the test when it does not within limit.
func waitForSocketMode(t *testing.T, path string, perm os.FileMode, limit time.Duration) os.FileInfo {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		stat, err := os.Stat(path)
		if err == nil && stat.Mode().Perm() == perm {
			return stat
		}
		if time.Now().After(deadline) {
			require.NoError(t, err, "socket %s not created within %s", path, limit)
			require.Equal(t, perm, stat.Mode().Perm(), "socket %s mode", path)
			return stat
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func init() {
	plugin.InitConfCache(time.Second)
}
