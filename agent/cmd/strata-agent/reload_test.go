package main

import (
	"context"
	"github.com/strata-infra/strata/internal/testenv"
	"io"
	"log/slog"
	"syscall"
	"testing"
	"time"
)

type resyncCounter chan struct{}

func (c resyncCounter) Resync() { c <- struct{}{} }

// TestSIGHUPResyncs sends this process SIGHUP twice: each one is a resync
// (and the process lives on).
func TestSIGHUPResyncs(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	c := make(resyncCounter, 2)
	done := reloadOnHUP(ctx, c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for i := 0; i < 2; i++ {
		if err := syscall.Kill(syscall.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		select {
		case <-c:
		case <-time.After(testenv.Scale(10 * time.Second)):
			t.Fatalf("SIGHUP %d: no resync", i+1)
		}
	}
	cancel()
	<-done
}
