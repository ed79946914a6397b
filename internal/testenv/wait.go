package testenv

import (
	"fmt"
	"time"
)

// pollEvery is how often Poll re-checks a condition.
const pollEvery = 20 * time.Millisecond

// Poll calls cond until it returns nil or Scale(limit) has passed, and
// returns how long it waited and cond's last error (nil on success).
func Poll(limit time.Duration, cond func() error) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(Scale(limit))
	for {
		err := cond()
		if err == nil {
			return time.Since(start), nil
		}
		if time.Now().After(deadline) {
			return time.Since(start), fmt.Errorf("not within %s (factor %g): %w", Scale(limit), Factor(), err)
		}
		time.Sleep(pollEvery)
	}
}

// FatalTB is the part of testing.TB that WaitFor uses.
type FatalTB interface {
	Helper()
	Fatalf(format string, args ...any)
}

// WaitFor polls cond until it holds or Scale(limit) has passed, failing t
// with what and cond's last error then. It returns how long it waited.
func WaitFor(t FatalTB, limit time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	d, err := Poll(limit, cond)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return d
}

// WaitTrue is WaitFor for a condition without an error of its own.
func WaitTrue(t FatalTB, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	return WaitFor(t, limit, what, func() error {
		if cond() {
			return nil
		}
		return fmt.Errorf("condition false")
	})
}
