// Command go-runner is the APISIX external plugin runner of
// apisix-identity-runner. APISIX starts it from ext-plugin.cmd as
// `go-runner run`.
package main

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/apache/apisix-go-plugin-runner/pkg/runner"
	"go.uber.org/zap/zapcore"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/assertion"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/inflight"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/runnerlog"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	switch os.Args[1] {
	case "run":
		os.Exit(run())
	case "version":
		fmt.Println("apisix-identity-runner", version)
	case "env":
		for _, v := range envVars {
			fmt.Println(v)
		}
	default:
		usage()
		os.Exit(2)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: go-runner run | version | env")
}

func run() int {
	cfg, err := loadConfig(os.Getenv)
	if err != nil {
		// Before the logger is set up: still JSON, so APISIX's error.log
		// readers see one shape.
		slog.New(slog.NewJSONHandler(os.Stdout, nil)).Error("go-runner: bad configuration", "error", err)
		return 1
	}
	log := slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: cfg.logLevel}))
	slog.SetDefault(log.With("service", "apisix-identity-runner"))

	keys, err := loadKeys(cfg)
	if err != nil {
		slog.Error("go-runner: RUNNER_SIGNING_KEY_FILE", "error", err)
		return 1
	}
	assertion.SetCurrent(keys)

	services, err := start(cfg)
	if err != nil {
		slog.Error("go-runner: start", "error", err)
		return 1
	}
	defer services.stop(cfg.shutdownGrace)

	slog.Warn("go-runner started", "version", version, "socket", cfg.listenAddress,
		"assertion_kid", keys.KeyID(), "redis", cfg.redisURL != "", "keycloak", cfg.keycloak.enabled())
	runner.Run(runner.RunnerConfig{LogLevel: zapLevel(cfg.logLevel), LogOutput: runnerlog.Writer{}})
	// Hand the watcher's lease over first: APISIX keeps sending on its open
	// connections, so under load the drain below lasts the whole grace period.
	services.stopWatcher()
	// The library has closed its listener; calls already in a plugin finish
	// before the clients they use are closed.
	if !inflight.Wait(cfg.shutdownGrace) {
		slog.Warn("go-runner stopping with calls still under way", "calls", inflight.Count())
	} else {
		// A call leaves our plugins a moment before the library has written
		// its answer to the socket.
		time.Sleep(100 * time.Millisecond)
	}
	slog.Warn("go-runner stopping")
	return 0
}

func loadKeys(cfg *config) (*assertion.KeyRing, error) {
	if cfg.signingKeyFile != "" {
		return assertion.LoadFile(cfg.signingKeyFile)
	}
	keys, err := assertion.Generate()
	if err != nil {
		return nil, err
	}
	slog.Warn("no RUNNER_SIGNING_KEY_FILE: signing assertions with a key made at start; "+
		"they will not verify across restarts or across gateway nodes", "kid", keys.KeyID())
	return keys, nil
}

// zapLevel maps our level onto the runner library's logger. The library logs
// about three lines per request at info, so it stays at warn unless we debug.
func zapLevel(l slog.Level) zapcore.Level {
	switch {
	case l <= slog.LevelDebug:
		return zapcore.DebugLevel
	case l <= slog.LevelWarn:
		return zapcore.WarnLevel
	}
	return zapcore.ErrorLevel
}
