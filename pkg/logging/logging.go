// Package logging builds the daemons' slog loggers.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
)

// New returns a logger writing format ("json" or "text") at level
// ("debug", "info", "warn", "error"). When w is the stream systemd
// connected to journald (JOURNAL_STREAM names it), each line starts with
// its syslog priority, "<4>" for a warning, so that journald files it at
// that priority and `journalctl -p warning` finds it.
func New(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	var pw *priorityWriter
	if f, ok := w.(*os.File); ok && ConnectedToJournal(f) {
		pw = &priorityWriter{w: w}
		w = pw
	}
	var h slog.Handler
	switch format {
	case "json":
		h = slog.NewJSONHandler(w, opts)
	case "text", "":
		h = slog.NewTextHandler(w, opts)
	default:
		return nil, fmt.Errorf("log format %q: want json or text", format)
	}
	if pw != nil {
		h = &journalHandler{inner: h, pw: pw}
	}
	return slog.New(h), nil
}

// ConnectedToJournal reports whether f is the stream systemd set up to
// journald: JOURNAL_STREAM holds its "device:inode".
func ConnectedToJournal(f *os.File) bool {
	want := os.Getenv("JOURNAL_STREAM")
	if want == "" {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return want == fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

// Priority is the syslog priority journald files a record of level at.
func Priority(level slog.Level) int {
	switch {
	case level >= slog.LevelError:
		return 3 // err
	case level >= slog.LevelWarn:
		return 4 // warning
	case level >= slog.LevelInfo:
		return 6 // info
	}
	return 7 // debug
}

// priorityWriter puts the current record's priority prefix in front of
// the one Write a slog handler makes per record.
type priorityWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix []byte
	line   []byte
}

func (p *priorityWriter) Write(b []byte) (int, error) {
	p.line = append(append(p.line[:0], p.prefix...), b...)
	if _, err := p.w.Write(p.line); err != nil {
		return 0, err
	}
	return len(b), nil
}

// journalHandler sets the priority for each record; handlers derived by
// WithAttrs and WithGroup share the writer and its lock.
type journalHandler struct {
	inner slog.Handler
	pw    *priorityWriter
}

func (h *journalHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *journalHandler) Handle(ctx context.Context, r slog.Record) error {
	h.pw.mu.Lock()
	defer h.pw.mu.Unlock()
	h.pw.prefix = fmt.Appendf(h.pw.prefix[:0], "<%d>", Priority(r.Level))
	return h.inner.Handle(ctx, r)
}

func (h *journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &journalHandler{inner: h.inner.WithAttrs(as), pw: h.pw}
}

func (h *journalHandler) WithGroup(name string) slog.Handler {
	return &journalHandler{inner: h.inner.WithGroup(name), pw: h.pw}
}
