package gossip

import (
	"context"
	"log/slog"
	"strings"
)

// logBridge receives memberlist's log.Logger output and re-emits each line
// into slog at debug level (memberlist logs routine churn as ERR/WARN, so
// its own level is kept only as an attribute).
//
// It also watches for the prober's suspicion line, the only race-free
// signal of suspicion memberlist offers. The text is that of memberlist
// v0.7.0 (state.go probeNode); TestLogBridgeSuspect and the failure
// detection test catch a change.
type logBridge struct {
	log       *slog.Logger
	onSuspect func(name string)
}

const (
	suspectPrefix = "Suspect "
	suspectSuffix = " has failed, no acks received"
)

func (b *logBridge) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\r\n")
	level := ""
	if strings.HasPrefix(line, "[") {
		if i := strings.IndexByte(line, ']'); i > 0 {
			level, line = line[1:i], strings.TrimSpace(line[i+1:])
		}
	}
	msg := strings.TrimPrefix(line, "memberlist: ")
	if strings.HasPrefix(msg, suspectPrefix) && strings.HasSuffix(msg, suspectSuffix) {
		b.onSuspect(strings.TrimSuffix(strings.TrimPrefix(msg, suspectPrefix), suspectSuffix))
	}
	if b.log.Enabled(context.Background(), slog.LevelDebug) {
		b.log.Debug(msg, "memberlist_level", level)
	}
	return len(p), nil
}
