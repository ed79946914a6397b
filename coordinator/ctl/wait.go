package ctl

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/apiclient"
)

// WaitInterval is how often Wait polls the coordinator.
var WaitInterval = 500 * time.Millisecond

// ErrNotApplied is wrapped by Wait's errors when a host refused the change
// or the scheduler could not place it: waiting longer would not help.
var ErrNotApplied = errors.New("not applied")

// Wait waits until every live host has applied the change that moved the
// cluster to epoch: for a resource that still exists (path names it),
// until each host whose plan carries it holds it at that epoch or later
// (applied, or in a state of its own: an instance's host reports it
// running or stopped); for a deleted one (or path ""), until every live host's
// applied epoch has reached it. Hosts that are not alive are not waited
// for, and the result says so. A host's error at the epoch or later (an
// older one is what the change may fix) or a refused placement ends
// the wait at once with that reason (ErrNotApplied). line, when not nil,
// gets a one-line progress report on every poll. ctx bounds the wait.
func Wait(ctx context.Context, c *apiclient.Client, path string, epoch uint64, line func(string)) (string, error) {
	tick := time.NewTicker(WaitInterval)
	defer tick.Stop()
	start := time.Now()
	last := fmt.Sprintf("epoch %d: nothing heard yet", epoch)
	for {
		done, msg, err := waitOnce(ctx, c, path, epoch)
		if ctx.Err() != nil {
			return last, fmt.Errorf("gave up waiting after %s: %s: %w", time.Since(start).Round(time.Millisecond), last, ctx.Err())
		}
		if err != nil || done {
			return msg, err
		}
		last = msg
		if line != nil {
			line(fmt.Sprintf("%s (%s)", msg, time.Since(start).Round(time.Second)))
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}

// waitOnce looks once: done, a one-line summary, or why it can never be.
func waitOnce(ctx context.Context, c *apiclient.Client, path string, epoch uint64) (bool, string, error) {
	var st api.ClusterStatus
	if err := c.Do(ctx, http.MethodGet, "/v1/status", nil, &st); err != nil {
		return false, "", err
	}
	alive := map[string]bool{}
	var notAlive []string
	for _, h := range st.Hosts {
		if h.State == api.StateAlive {
			alive[h.Name] = true
		} else {
			notAlive = append(notAlive, h.Name+" "+h.State)
		}
	}
	skipped := ""
	if len(notAlive) > 0 {
		sort.Strings(notAlive)
		skipped = "; not waited for: " + strings.Join(notAlive, ", ")
	}
	var hosts []api.ResourceStatus
	if path != "" {
		var r api.Resource
		err := c.Do(ctx, http.MethodGet, path, nil, &r)
		var ae *api.Error
		switch {
		case errors.As(err, &ae) && ae.Code == http.StatusNotFound:
			path = "" // deleted since: wait for the epoch alone
		case err != nil:
			return false, "", err
		default:
			if p := r.Placement; p != nil && p.State == api.PlacementRefused {
				return false, "", fmt.Errorf("%w: no host can take it: %s", ErrNotApplied, p.Message)
			}
			hosts = r.Hosts
		}
	}
	if path == "" {
		for _, h := range st.Hosts {
			if alive[h.Name] {
				e := h.AppliedEpoch
				if h.Converged {
					// It applied every commit that concerned it: the
					// epochs since changed nothing in its plan.
					e = max(e, st.Epoch)
				}
				hosts = append(hosts, api.ResourceStatus{Host: h.Name, State: api.ResourceApplied, Epoch: e})
			}
		}
	}
	var applied, waiting, says []string
	for _, h := range hosts {
		if !alive[h.Host] {
			continue
		}
		switch {
		case h.State == api.ResourceError && h.Epoch >= epoch:
			return false, "", fmt.Errorf("%w: host %s: %s", ErrNotApplied, h.Host, h.Message)
		case h.HoldsAt(epoch):
			applied = append(applied, h.Host)
		default:
			waiting = append(waiting, h.Host)
			if h.State == api.ResourcePending && h.Message != "" {
				// Say what it waits for (a krbd volume's host flushing
				// its cache: how many dirty blocks are left).
				says = append(says, h.Message)
			}
		}
	}
	if len(waiting) == 0 {
		return true, fmt.Sprintf("applied on %d host(s)%s", len(applied), skipped), nil
	}
	sort.Strings(waiting)
	sort.Strings(says)
	why := ""
	if len(says) > 0 {
		why = ": " + strings.Join(says, "; ")
	}
	return false, fmt.Sprintf("epoch %d: %d of %d host(s) applied, waiting for %s%s%s",
		epoch, len(applied), len(applied)+len(waiting), strings.Join(waiting, ", "), why, skipped), nil
}
