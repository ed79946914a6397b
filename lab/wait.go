package lab

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/apiclient"
)

// Client is an admin API client for the lab.
func (l *Lab) Client() (*apiclient.Client, error) {
	tok, err := l.AdminToken()
	if err != nil {
		return nil, err
	}
	return apiclient.NewPinned(l.Endpoint(), tok, l.CAFile())
}

// WaitStatus polls /v1/status until ok holds, returning the last status.
func (l *Lab) WaitStatus(ctx context.Context, limit time.Duration, what string, ok func(api.ClusterStatus) bool) (api.ClusterStatus, error) {
	c, err := l.Client()
	if err != nil {
		return api.ClusterStatus{}, err
	}
	var st api.ClusterStatus
	var exited error
	err = waitFor(ctx, limit, what, func() error {
		if exited = l.Exited(); exited != nil {
			return nil // no point waiting: say why at once
		}
		st = api.ClusterStatus{}
		if err := c.Do(ctx, http.MethodGet, "/v1/status", nil, &st); err != nil {
			return err
		}
		if !ok(st) {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	if exited != nil {
		return st, fmt.Errorf("%s: %w", what, exited)
	}
	return st, err
}

// Exited names the first lab process (coordinator or agent) that is no
// longer running, with the tail of its log; nil when all run.
func (l *Lab) Exited() error {
	procs := []proc{l.coordinatorProc()}
	for i := 1; i <= l.Hosts; i++ {
		procs = append(procs, l.agentProc(i))
	}
	for _, p := range procs {
		if l.running(p) != 0 {
			continue
		}
		b, _ := os.ReadFile(l.logFile(p.name))
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) > 5 {
			lines = lines[len(lines)-5:]
		}
		return fmt.Errorf("%s exited; last lines of %s:\n%s", p.name, l.logFile(p.name), strings.Join(lines, "\n"))
	}
	return nil
}

// AllAliveAndConverged is true when n hosts are alive and on the epoch.
func AllAliveAndConverged(n int) func(api.ClusterStatus) bool {
	return func(st api.ClusterStatus) bool {
		alive := 0
		for _, h := range st.Hosts {
			if h.State == api.StateAlive && h.Converged {
				alive++
			}
		}
		return st.Converged && alive == n
	}
}
