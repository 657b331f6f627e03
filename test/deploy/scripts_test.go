package deploy

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The services' scripts pick their ports below the range the kernel gives
// outgoing connections: Keycloak binds its port some 40 s after the choice,
// and a connection the run makes meanwhile (Maven, go, pip) once took it
// ("Port already bound" at Keycloak's start in CI).
func TestServicePortsAvoidTheEphemeralRange(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		t.Skip("no /proc/sys/net/ipv4/ip_local_port_range: not Linux")
	}
	fields := strings.Fields(string(b))
	require.Len(t, fields, 2)
	low, err := strconv.Atoi(fields[0])
	require.NoError(t, err)
	if low < 12000 {
		t.Skipf("this machine's ephemeral range starts at %d: free_port falls back to 20000-59999", low)
	}

	cmd := exec.Command("bash", "-c", `NAME=test; source scripts/lib.sh; for i in $(seq 1 300); do free_port 10000; done`)
	cmd.Dir = root(t)
	out, err := cmd.Output()
	require.NoError(t, err)
	ports := strings.Fields(string(out))
	require.Len(t, ports, 300)
	for _, p := range ports {
		n, err := strconv.Atoi(p)
		require.NoError(t, err)
		assert.True(t, n > 10000 && n < low, "port %d between 10000 and the ephemeral range's start (%d)", n, low)
	}
}
