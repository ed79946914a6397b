package gossip

import (
	"io"
	"log/slog"
)

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func textLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
