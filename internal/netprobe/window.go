package netprobe

import (
	"context"
	"fmt"
	"time"
)

// Window pings one address from a namespace, in back-to-back batches of one
// second at 20 packets a second, from Start until Stop, so that a test can
// check that its ping covered a whole event (a restart and the
// re-convergence after it) and not just a guess of its length.
type Window struct {
	stop chan struct{}
	done chan struct{}
	// Begin is when the first packet was sent, End when the last batch
	// ended; Sent and Recv count packets over the whole window.
	Begin, End time.Time
	Sent, Recv int
	Err        error // why a batch could not run, if one could not
}

// StartWindow starts pinging ip from ns and returns once the first batch
// has been sent (so Begin is before anything the caller does next).
func StartWindow(ns, ip string) *Window {
	w := &Window{stop: make(chan struct{}), done: make(chan struct{})}
	started := make(chan struct{})
	go func() {
		defer close(w.done)
		w.Begin = time.Now()
		close(started)
		for {
			s, r, err := Ping(context.Background(), ns, ip, 20, 50*time.Millisecond)
			w.Sent, w.Recv = w.Sent+s, w.Recv+r
			if s == 0 {
				w.Err = fmt.Errorf("ping %s from %s sent nothing: %v", ip, ns, err)
			}
			select {
			case <-w.stop:
				w.End = time.Now()
				return
			default:
			}
			if s == 0 {
				time.Sleep(50 * time.Millisecond)
			}
		}
	}()
	<-started
	return w
}

// Stop ends the window after the batch in flight and returns it.
func (w *Window) Stop() *Window {
	close(w.stop)
	<-w.done
	return w
}

// Covers returns an error unless the window began before from and ended
// after to, with every packet answered.
func (w *Window) Covers(from, to time.Time) error {
	switch {
	case w.Err != nil:
		return w.Err
	case w.Sent == 0 || w.Recv != w.Sent:
		return fmt.Errorf("%d of %d packets lost", w.Sent-w.Recv, w.Sent)
	case !w.Begin.Before(from):
		return fmt.Errorf("the ping began %s after the event", w.Begin.Sub(from))
	case !w.End.After(to):
		return fmt.Errorf("the ping ended %s before the re-convergence was done", to.Sub(w.End))
	}
	return nil
}
