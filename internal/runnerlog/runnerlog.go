// Package runnerlog turns the runner library's console log lines into the
// same structured JSON the rest of the process writes, so APISIX's error.log
// holds one format. Plugins import it so that it is set up before their init
// registers them (the library logs each registration).
package runnerlog

import (
	"bytes"
	"context"
	"log/slog"
	"strings"

	runnerLog "github.com/apache/apisix-go-plugin-runner/pkg/log"
	"go.uber.org/zap/zapcore"
)

func init() {
	// Until main picks the level, keep the library quiet: warn and above.
	runnerLog.NewLogger(zapcore.WarnLevel, Writer{})
}

// Writer is a zapcore.WriteSyncer that re-emits the library's console lines
// ("time<TAB>LEVEL<TAB>caller<TAB>message") through slog.Default().
type Writer struct{}

// Write logs one console line (with any stack trace lines that follow it).
func (Writer) Write(p []byte) (int, error) {
	line := string(bytes.TrimRight(p, "\n"))
	first, stack, _ := strings.Cut(line, "\n")
	fields := strings.SplitN(first, "\t", 4)
	level, caller, msg := slog.LevelInfo, "", first
	if len(fields) == 4 {
		level = parseLevel(fields[1])
		caller, msg = fields[2], fields[3]
	}
	attrs := []slog.Attr{slog.String("component", "runner-library"), slog.String("caller", caller)}
	if stack != "" {
		attrs = append(attrs, slog.String("stack", stack))
	}
	slog.Default().LogAttrs(context.Background(), level, msg, attrs...)
	return len(p), nil
}

// Sync has nothing to flush.
func (Writer) Sync() error { return nil }

func parseLevel(s string) slog.Level {
	switch s {
	case "DEBUG":
		return slog.LevelDebug
	case "INFO":
		return slog.LevelInfo
	case "WARN":
		return slog.LevelWarn
	}
	return slog.LevelError
}
