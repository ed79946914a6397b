package lab

import (
	"context"
	"fmt"
	"net/http"
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
	return apiclient.New(l.Endpoint(), tok), nil
}

// WaitStatus polls /v1/status until ok holds, returning the last status.
func (l *Lab) WaitStatus(ctx context.Context, limit time.Duration, what string, ok func(api.ClusterStatus) bool) (api.ClusterStatus, error) {
	c, err := l.Client()
	if err != nil {
		return api.ClusterStatus{}, err
	}
	var st api.ClusterStatus
	err = waitFor(ctx, limit, what, func() error {
		st = api.ClusterStatus{}
		if err := c.Do(ctx, http.MethodGet, "/v1/status", nil, &st); err != nil {
			return err
		}
		if !ok(st) {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	return st, err
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
