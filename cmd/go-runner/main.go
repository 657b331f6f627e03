// Command go-runner is the APISIX external plugin runner of
// apisix-identity-runner. APISIX starts it from ext-plugin.cmd as
// `go-runner run`.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/apache/apisix-go-plugin-runner/pkg/runner"
	"go.uber.org/zap/zapcore"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/assertion"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/inflight"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/logfile"
	"github.com/apisix-identity-runner/apisix-identity-runner/internal/runnerlog"
)

// version is set at build time with -ldflags "-X main.version=..." (make build); a binary
// built otherwise reports its module's build info (currentBuild).
var version = "dev"

func main() {
	if len(os.Args) < 2 {
		usage(os.Stderr)
		os.Exit(2)
	}
	switch os.Args[1] {
	case "run":
		os.Exit(run())
	case "check":
		os.Exit(runCheck(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	case "version", "--version", "-version":
		fmt.Println("apisix-identity-runner", currentBuild().version)
	case "env":
		for _, v := range envVars {
			fmt.Println(v)
		}
	case "help", "-h", "-help", "--help":
		usage(os.Stdout)
	default:
		fmt.Fprintf(os.Stderr, "go-runner: unknown command %q\n", os.Args[1])
		usage(os.Stderr)
		os.Exit(2)
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: go-runner COMMAND

  run        serve APISIX's ext-plugin protocol (APISIX starts it from ext-plugin.cmd)
  check      check route configs that use the runner's plugins (go-runner check -h)
  env        list the environment variables the runner reads
  version    print the version
`)
}

func run() int {
	cfg, err := loadConfig(os.Getenv)
	if err != nil {
		// Before the logger is set up: still JSON, so APISIX's error.log
		// readers see one shape.
		slog.New(slog.NewJSONHandler(os.Stdout, nil)).Error("go-runner: bad configuration", "error", err)
		return 1
	}
	closeLog, err := setupLog(cfg)
	if err != nil {
		slog.New(slog.NewJSONHandler(os.Stdout, nil)).Error("go-runner: bad configuration", "error", err)
		return 1
	}
	defer closeLog()
	// Before the metrics listener starts: its first scrape says which build runs.
	b := currentBuild()
	exportBuildInfo(b)
	for _, w := range cfg.warnings {
		slog.Warn("go-runner: configuration", "warning", w)
	}

	keys, err := loadKeys(cfg)
	if err != nil {
		slog.Error("go-runner: RUNNER_SIGNING_KEY_FILE", "error", err)
		return 1
	}
	// GOMEMLIMIT, when set, is Go's own and wins.
	if cfg.memoryLimit > 0 && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(cfg.memoryLimit)
	}
	var tr tracer
	if cfg.traces {
		if tr, err = newTracer(context.Background()); err != nil {
			slog.Error("go-runner: traces", "error", err)
			return 1
		}
	}
	// Deferred first, run last: the clients' last spans are exported.
	defer tr.shutdown()
	services, err := start(cfg, tr.Tracer)
	if err != nil {
		slog.Error("go-runner: start", "error", err)
		return 1
	}
	defer services.stop()
	calls := &inflight.Counter{}
	if err := registerPlugins(services, keys, calls); err != nil {
		slog.Error("go-runner: start", "error", err)
		return 1
	}

	slog.Warn("go-runner started", "version", b.version, "revision", b.revision, "socket", cfg.listenAddress,
		"assertion_kid", keys.KeyID(), "redis", cfg.redisURL != "", "keycloak", cfg.keycloak.enabled(), "traces", cfg.traces)
	// ReuseFrames: the plugins keep nothing of a request past it without
	// copying (the poisoned-frame tests hold them to it), so each
	// connection reads its requests into one buffer, and a browser's 5 KB
	// frame is not garbage per request.
	runner.Run(runner.RunnerConfig{LogLevel: zapLevel(cfg.logLevel), LogOutput: runnerlog.Writer{}, ReuseFrames: true})
	// SIGTERM. APISIX kills the runner about a second after it
	// (apisix/plugins/ext-plugin/init.lua, exit_worker: "give 1s to clean up
	// the mess"), so what the fleet needs comes first: the watcher's lease.
	// The library has closed its listener; calls already in a plugin then
	// finish, for up to RUNNER_SHUTDOWN_GRACE, before their clients close.
	// The grace counts from SIGTERM, not from the end of the release.
	stopping := time.Now()
	services.release()
	if !calls.Wait(cfg.shutdownGrace - time.Since(stopping)) {
		slog.Warn("go-runner stopping with calls still under way", "calls", calls.Count())
	} else {
		// A call leaves our plugins a moment before the library has written
		// its answer to the socket.
		time.Sleep(50 * time.Millisecond)
	}
	slog.Warn("go-runner stopping")
	services.stop()
	tr.shutdown()
	slog.Warn("go-runner stopped", "took_ms", time.Since(stopping).Milliseconds())
	return 0
}

// setupLog sends the process's JSON lines to stdout, which APISIX copies
// into its error.log at warn level (so error_log_level error hides them), or
// to RUNNER_LOG_FILE. The file is reopened on SIGHUP, logrotate's usual
// signal; without a file SIGHUP is ignored rather than killing the runner.
func setupLog(cfg *config) (func(), error) {
	var out io.Writer = os.Stdout
	var file *logfile.File
	if cfg.logFile != "" {
		var err error
		if file, err = logfile.Open(cfg.logFile); err != nil {
			return nil, fmt.Errorf("RUNNER_LOG_FILE: %w", err)
		}
		out = file
		// One line in error.log says where the others are.
		slog.New(slog.NewJSONHandler(os.Stdout, nil)).Warn("go-runner logs to RUNNER_LOG_FILE",
			"service", "apisix-identity-runner", "file", cfg.logFile)
	}
	log := slog.New(slog.NewJSONHandler(out, &slog.HandlerOptions{Level: cfg.logLevel}))
	slog.SetDefault(log.With("service", "apisix-identity-runner"))

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-hup:
			}
			if file == nil {
				slog.Info("SIGHUP ignored: no RUNNER_LOG_FILE to reopen")
				continue
			}
			if err := file.Reopen(); err != nil {
				slog.Error("RUNNER_LOG_FILE not reopened; still writing to the old file", "error", err)
				continue
			}
			slog.Info("RUNNER_LOG_FILE reopened", "file", file.Path())
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
		if file != nil {
			_ = file.Close()
		}
	}, nil
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
