//go:build integration

package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/apisix-identity-runner/apisix-identity-runner/test/kctest"
)

// Through the runner binary: unsigned calls do not use up the sender's rate
// limit, and a signed body is accepted once by the fleet, whatever the
// route, the config's age or the runner it reaches.
func TestSecurityInvalidationOnceInTheFleet(t *testing.T) {
	e := baseEnv(t, kctest.Env(t).URL)
	e["KEYCLOAK_EVENTS_INTERVAL"] = "0s"
	r1 := startRunner(t, e)
	r2 := startRunner(t, e)
	hookA := newRoute(orgsyncConf(`{"invalidate":true,"secret_env":"ORGSYNC_WEBHOOK_SECRET","rate_limit":2}`))
	hookB := newRoute(orgsyncConf(`{"invalidate":true,"secret_env":"ORGSYNC_WEBHOOK_SECRET","max_age":"1h"}`))
	body := func(user string) []byte {
		return []byte(fmt.Sprintf(`{"user_ids":[%q],"time":%d}`, user, time.Now().UnixMilli()))
	}

	for i := range 100 {
		b := body(fmt.Sprintf("u-flood-%d", i))
		require.Equal(t, 401, post(t, r1, hookA, b, "sha256="+strings.Repeat("0", 64)).Status)
	}
	once := body("u-once")
	res := post(t, r1, hookA, once, sign(once))
	require.Equal(t, 200, res.Status, "a signed call after 100 unsigned ones: %s", res.Body)

	for name, try := range map[string]func() int{
		"same route":                  func() int { return post(t, r1, hookA, once, sign(once)).Status },
		"another route, same secret":  func() int { return post(t, r1, hookB, once, sign(once)).Status },
		"another runner":              func() int { return post(t, r2, hookA, once, sign(once)).Status },
		"another runner, other route": func() int { return post(t, r2, hookB, once, sign(once)).Status },
		"same route, config sent again": func() int {
			r1.gw.FlushTokens()
			return post(t, r1, hookA, once, sign(once)).Status
		},
	} {
		assert.Equal(t, 409, try(), name)
	}
	next := body("u-next")
	assert.Equal(t, 200, post(t, r2, hookB, next, sign(next)).Status, "a new call is accepted")
}
