package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// etcdTimeFormat is how etcd's logs write "ts": microseconds, and the
// zone as Z or an offset.
const etcdTimeFormat = "2006-01-02T15:04:05.000000Z0700"

// logSettings are the logging flags: --logger, --log-level, --log-format
// and --log-outputs, as etcd's.
type logSettings struct {
	logger, level, format string
	outputs               []string
}

// newLogger builds the member's logger. By default it writes JSON lines
// with etcd's field names (level, ts, caller, msg), so that what reads
// etcd's logs reads synod's. Log files stay open for the life of the
// process.
func newLogger(ls logSettings, stderr io.Writer) (*slog.Logger, error) {
	var lv slog.Level
	switch ls.level {
	case "debug":
		lv = slog.LevelDebug
	case "info":
		lv = slog.LevelInfo
	case "warn":
		lv = slog.LevelWarn
	case "error", "panic", "fatal":
		lv = slog.LevelError
	default:
		return nil, fmt.Errorf("invalid --log-level %q: want debug, info, warn, error, panic or fatal", ls.level)
	}
	switch ls.logger {
	case "zap", "json":
	case "text":
		// synod's own short form for a terminal, kept from before.
		ls.format = "console"
	default:
		return nil, fmt.Errorf("invalid --logger %q: only zap is supported (structured logs, etcd's default)", ls.logger)
	}
	w, err := logOutputs(ls.outputs, stderr)
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: lv, AddSource: true, ReplaceAttr: etcdAttr}
	switch ls.format {
	case "json", "":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "console":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("invalid --log-format %q: want json or console", ls.format)
}

// etcdAttr renames and formats slog's attributes as etcd's logger writes
// them: "ts" for the time, a lower-case level, the caller as dir/file:line,
// and durations as text ("1.5s").
func etcdAttr(groups []string, a slog.Attr) slog.Attr {
	if len(groups) > 0 {
		return durationText(a)
	}
	switch a.Key {
	case slog.TimeKey:
		return slog.String("ts", a.Value.Time().UTC().Format(etcdTimeFormat))
	case slog.LevelKey:
		return slog.String("level", strings.ToLower(a.Value.String()))
	case slog.SourceKey:
		src, ok := a.Value.Any().(*slog.Source)
		if !ok {
			return a
		}
		return slog.String("caller", filepath.Join(filepath.Base(filepath.Dir(src.File)), filepath.Base(src.File))+fmt.Sprintf(":%d", src.Line))
	}
	return durationText(a)
}

func durationText(a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}

// logOutputs opens --log-outputs: "default" and "stderr" are standard
// error, "stdout" standard output, "/dev/null" nothing, anything else a
// file appended to.
func logOutputs(outputs []string, stderr io.Writer) (io.Writer, error) {
	var ws []io.Writer
	seen := map[string]bool{}
	for _, o := range outputs {
		if seen[o] {
			continue
		}
		seen[o] = true
		switch o {
		case "default", "stderr":
			ws = append(ws, stderr)
		case "stdout":
			ws = append(ws, os.Stdout)
		case "/dev/null":
		default:
			f, err := os.OpenFile(o, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
			if err != nil {
				return nil, fmt.Errorf("invalid --log-outputs %q: %w", o, err)
			}
			ws = append(ws, f)
		}
	}
	return io.MultiWriter(ws...), nil
}
