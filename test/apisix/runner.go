package apisix

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/logtest"
)

// RunnerOptions says how to start a runner.
type RunnerOptions struct {
	// Binary is the runner executable. Required.
	Binary string
	// Args are the arguments after the binary, as in ext-plugin.cmd
	// (e.g. ["run"]). Default none.
	Args []string
	// Env is the runner's extra environment ("NAME=value"). Like nginx, which
	// clears its environment except TZ and what nginx_config.envs lists, the
	// runner sees only Env, TZ and the two APISIX_* variables.
	Env []string
	// ConfExpire is APISIX_CONF_EXPIRE_TIME, whole seconds, at least 1s.
	// Default 3600s, APISIX's fixed value.
	ConfExpire time.Duration
	// Dir is where the socket goes. Default a new short directory under the
	// system temp dir, removed by Stop and Kill (unix socket paths are limited
	// to about 104 bytes, too short for most t.TempDir paths).
	Dir string
	// StopTimeout is how long Stop waits after SIGTERM before SIGKILL.
	// Default 1s, what APISIX's exit_worker waits.
	StopTimeout time.Duration
	// StartTimeout bounds the wait for the socket. Default 10s.
	StartTimeout time.Duration
}

// Runner is a running runner process started as APISIX starts it.
type Runner struct {
	opts    RunnerOptions
	socket  string
	tempDir string // removed on Stop/Kill when we made it

	out *logtest.Buffer

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	err  error // exit error, valid after done is closed
}

// StartRunner starts the runner and waits until it serves its socket: it
// sends one PrepareConf with key ProbeKey and no conf list, which shows in the
// runner's Info log as one connection and one PrepareConf.
func StartRunner(opts RunnerOptions) (*Runner, error) {
	if opts.Binary == "" {
		return nil, errors.New("apisix: runner binary is required")
	}
	if opts.ConfExpire == 0 {
		opts.ConfExpire = 3600 * time.Second
	}
	if opts.ConfExpire < time.Second {
		return nil, fmt.Errorf("apisix: conf expire %s must be at least 1s", opts.ConfExpire)
	}
	if opts.StopTimeout == 0 {
		opts.StopTimeout = time.Second
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 10 * time.Second
	}
	r := &Runner{opts: opts, out: &logtest.Buffer{}}
	dir := opts.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "a6-")
		if err != nil {
			return nil, fmt.Errorf("apisix: socket dir: %w", err)
		}
		dir, r.tempDir = d, d
	}
	r.socket = filepath.Join(dir, "runner.sock")
	if len(r.socket) > 100 {
		r.cleanup()
		return nil, fmt.Errorf("apisix: socket path %s is too long for a unix socket", r.socket)
	}
	if err := r.start(); err != nil {
		r.cleanup()
		return nil, err
	}
	return r, nil
}

func (r *Runner) start() error {
	// A stale socket from a killed runner would look ready.
	_ = os.Remove(r.socket)
	if err := os.MkdirAll(filepath.Dir(r.socket), 0o700); err != nil {
		return fmt.Errorf("apisix: socket dir: %w", err)
	}

	cmd := exec.Command(r.opts.Binary, r.opts.Args...)
	env := []string{}
	if tz, ok := os.LookupEnv("TZ"); ok {
		env = append(env, "TZ="+tz)
	}
	env = append(env, r.opts.Env...)
	env = append(env,
		"APISIX_CONF_EXPIRE_TIME="+strconv.Itoa(int(r.opts.ConfExpire/time.Second)),
		"APISIX_LISTEN_ADDRESS=unix:"+r.socket,
	)
	cmd.Env = env
	cmd.Stdout = r.out // merge_stderr = true
	cmd.Stderr = r.out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("apisix: start runner %s: %w", r.opts.Binary, err)
	}
	done := make(chan struct{})
	r.mu.Lock()
	r.cmd, r.done, r.err = cmd, done, nil
	r.mu.Unlock()
	go func() {
		err := cmd.Wait()
		r.mu.Lock()
		r.err = err
		r.mu.Unlock()
		close(done)
	}()

	// Ready when the socket exists (with the mode v0.5.0 sets right after
	// listen, 0766, or for 50 ms for runners that don't chmod) and the runner
	// has answered a PrepareConf on it.
	deadline := time.Now().Add(r.opts.StartTimeout)
	var seen time.Time
	for {
		select {
		case <-done:
			return fmt.Errorf("apisix: runner exited before listening (%v); output:\n%s", r.exitErr(), r.Output())
		default:
		}
		if fi, err := os.Stat(r.socket); err == nil && fi.Mode()&os.ModeSocket != 0 {
			if seen.IsZero() {
				seen = time.Now()
			}
			if fi.Mode().Perm() == 0o766 || time.Since(seen) > 50*time.Millisecond {
				if err := r.probe(); err == nil {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("apisix: runner did not listen on %s within %s; output:\n%s",
				r.socket, r.opts.StartTimeout, r.Output())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ProbeKey is the PrepareConf key of the readiness probe StartRunner sends.
const ProbeKey = "apisix-test-readiness"

// probe sends one PrepareConf without conf list and waits for the token. A v0.5.0
// runner installs its SIGTERM handler before it starts accepting, so once it
// answers, Stop gets a clean exit rather than death by the default action.
func (r *Runner) probe() error {
	c, err := net.DialTimeout("unix", r.socket, connectTimeout)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return err
	}
	if err := WriteFrame(c, TypePrepareConf, encodePrepareConf(ProbeKey, nil)); err != nil {
		return err
	}
	ty, body, err := ReadFrame(c)
	if err != nil {
		return err
	}
	if ty != TypePrepareConf {
		return fmt.Errorf("apisix: probe answered with type %d", ty)
	}
	_, err = decodePrepareConfResp(body)
	return err
}

// Socket returns the socket path (APISIX_LISTEN_ADDRESS without "unix:").
func (r *Runner) Socket() string { return r.socket }

// Pid returns the current runner process id.
func (r *Runner) Pid() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cmd.Process.Pid
}

// Output returns the runner's stdout and stderr so far, merged as APISIX
// merges them into its error.log.
func (r *Runner) Output() string { return r.out.String() }

// Exited is closed when the current runner process has exited.
func (r *Runner) Exited() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.done
}

func (r *Runner) exitErr() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// Stop sends SIGTERM, waits up to StopTimeout, then SIGKILLs, as APISIX's
// exit_worker does. It returns the process's exit error (nil for exit 0), or
// an error saying it had to be killed.
func (r *Runner) Stop() error {
	err := r.terminate()
	r.cleanup()
	return err
}

func (r *Runner) terminate() error {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.mu.Unlock()
	select {
	case <-done:
		return r.exitErr()
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		return r.exitErr()
	case <-time.After(r.opts.StopTimeout):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("apisix: runner still running %s after SIGTERM, killed: %w", r.opts.StopTimeout, r.exitErr())
	}
}

// Kill sends SIGKILL and waits for the process.
func (r *Runner) Kill() {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.mu.Unlock()
	_ = cmd.Process.Kill()
	<-done
	r.cleanup()
}

// Restart stops the runner (SIGTERM) and starts it again on the same socket,
// the way APISIX respawns a runner that exited. The new process has an empty
// conf cache, so gateways get CONF_TOKEN_NOT_FOUND for their old tokens.
func (r *Runner) Restart() error {
	if err := r.terminate(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return err
		}
	}
	return r.start()
}

func (r *Runner) cleanup() {
	if r.tempDir != "" {
		_ = os.RemoveAll(r.tempDir)
	}
}
