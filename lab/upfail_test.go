package lab

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestLabUpFailsWhenAnAgentExits: an agent that exits at start makes the
// wait of `strata-lab up` fail at once, naming it, instead of timing out.
func TestLabUpFailsWhenAnAgentExits(t *testing.T) {
	l := testLab(t, 1, 100)
	l.AgentExtraArgs = func(int) []string { return []string{"--no-such-flag"} }
	ctx := context.Background()
	if err := l.Up(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := l.WaitStatus(ctx, 60*time.Second, "hosts alive and converged", AllAliveAndConverged(1))
	if err == nil || !strings.Contains(err.Error(), "h1 exited") || !strings.Contains(err.Error(), "no-such-flag") {
		t.Fatalf("wait: %v; want it to name the agent that exited and its log", err)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("the exit was reported after %s, not at once", took)
	}
	t.Logf("reported in %s: %v", time.Since(start).Round(time.Millisecond), err)
}
