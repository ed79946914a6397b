package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/apiclient"
)

// defaultMoveTimeout is how long hosts drain waits, by default, for one
// instance to move (--move-timeout): a live move of a busy guest over a
// slow link can take minutes.
const defaultMoveTimeout = 10 * time.Minute

// hostInstance is one instance placed on the drained host.
type hostInstance struct {
	project, name string
	spec          api.InstanceSpec
}

// instancesOn lists every project's instances placed on host.
func instancesOn(ctx context.Context, c *apiclient.Client, host string) ([]hostInstance, error) {
	var projects []api.Resource
	if err := c.Do(ctx, http.MethodGet, "/v1/projects", nil, &projects); err != nil {
		return nil, err
	}
	var out []hostInstance
	for _, p := range projects {
		var rs []api.Resource
		if err := c.Do(ctx, http.MethodGet, apiclient.ResourcePath("instances", p.Name, ""), nil, &rs); err != nil {
			return nil, err
		}
		for _, r := range rs {
			var s api.InstanceSpec
			if json.Unmarshal(r.Spec, &s) == nil && s.Host == host {
				out = append(out, hostInstance{project: p.Name, name: r.Name, spec: s})
			}
		}
	}
	return out, nil
}

// setInstance is one read-modify-write of an instance's spec.
func setInstance(ctx context.Context, c *apiclient.Client, in hostInstance, edit func(s *api.InstanceSpec)) error {
	_, err := c.Modify(ctx, apiclient.ResourcePath("instances", in.project, in.name), func(r api.Resource) (json.RawMessage, error) {
		var s api.InstanceSpec
		if err := json.Unmarshal(r.Spec, &s); err != nil {
			return nil, err
		}
		edit(&s)
		return json.Marshal(s)
	})
	return err
}

// waitInstance polls the instance until done says so, for at most limit;
// running out of time, it says what it saw last.
func waitInstance(ctx context.Context, c *apiclient.Client, in hostInstance, limit time.Duration, what string, done func(r api.Resource, s api.InstanceSpec) bool) error {
	deadline := time.Now().Add(limit)
	for {
		var r api.Resource
		if err := c.Do(ctx, http.MethodGet, apiclient.ResourcePath("instances", in.project, in.name), nil, &r); err != nil {
			return err
		}
		var s api.InstanceSpec
		_ = json.Unmarshal(r.Spec, &s)
		if done(r, s) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("instance %s/%s: %s not done after %s (--move-timeout); last seen: %s", in.project, in.name, what, limit, seen(r, s))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// seen sums up an instance as a drain waits on it.
func seen(r api.Resource, s api.InstanceSpec) string {
	out := fmt.Sprintf("placed on %q at epoch %d", s.Host, r.Epoch)
	if s.Migration != nil {
		out += fmt.Sprintf(", a move from %s in flight", s.Migration.Source)
	}
	if r.Status != nil {
		out += fmt.Sprintf(", %s reports it %s at epoch %d", r.Status.Host, r.Status.State, r.Status.Epoch)
		if r.Status.Message != "" {
			out += " (" + r.Status.Message + ")"
		}
	}
	for _, h := range r.Hosts {
		out += fmt.Sprintf("; %s: %s at epoch %d", h.Host, h.State, h.Epoch)
		if h.Message != "" {
			out += " (" + h.Message + ")"
		}
	}
	return out
}

// movedOff: placed elsewhere, no migration in flight, and its new host
// holds it at its current epoch.
func movedOff(host string) func(r api.Resource, s api.InstanceSpec) bool {
	return func(r api.Resource, s api.InstanceSpec) bool {
		if s.Host == host || s.Migration != nil {
			return false
		}
		for _, h := range r.Hosts {
			if h.Host == s.Host && h.HoldsAt(r.Epoch) {
				return true
			}
		}
		return false
	}
}

// emptyHost moves every instance off a drained host, one at a time with
// a progress line each: live (a running instance on RBD), or cold (stop,
// migrate, start again); then the host's routers and DHCP servers; and
// says when the host is empty.
// Each move may take up to limit.
func emptyHost(ctx context.Context, c *apiclient.Client, w io.Writer, host, mode string, limit time.Duration) error {
	ins, err := instancesOn(ctx, c, host)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "draining %s: %d instances to move (%s)\n", host, len(ins), mode)
	var left []string
	for i, in := range ins {
		start := time.Now()
		running := in.spec.Power != api.PowerStopped
		rbdDisk := in.spec.RootVolume != "" || in.spec.BootVolume != ""
		how := "cold"
		switch {
		case mode == "live" && running && rbdDisk:
			how = "live"
			err = setInstance(ctx, c, in, func(s *api.InstanceSpec) { s.LiveMigrations++ })
		case mode == "live" && running:
			left = append(left, in.project+"/"+in.name+" (running on a local disk: drain with --migrate cold)")
			fmt.Fprintf(w, "[%d/%d] %s/%s stays: its disk is local; a live move needs it on RBD\n", i+1, len(ins), in.project, in.name)
			continue
		default:
			if running {
				if err = setInstance(ctx, c, in, func(s *api.InstanceSpec) { s.Power = api.PowerStopped }); err == nil {
					err = waitInstance(ctx, c, in, limit, "stop", func(r api.Resource, s api.InstanceSpec) bool {
						return r.Status != nil && r.Status.Host == host && r.Status.State == api.PowerStopped
					})
				}
			}
			if err == nil {
				err = setInstance(ctx, c, in, func(s *api.InstanceSpec) { s.Migrations++ })
			}
		}
		if err == nil {
			err = waitInstance(ctx, c, in, limit, how+" migration", movedOff(host))
		}
		if err == nil && how == "cold" && running {
			err = setInstance(ctx, c, in, func(s *api.InstanceSpec) { s.Power = api.PowerRunning; s.Starts++ })
		}
		if err != nil {
			return fmt.Errorf("drain %s: move %s/%s (%s): %w", host, in.project, in.name, how, err)
		}
		fmt.Fprintf(w, "[%d/%d] %s/%s moved %s in %.1fs\n", i+1, len(ins), in.project, in.name, how, time.Since(start).Seconds())
	}
	var pr api.PutResult
	if err := c.Do(ctx, http.MethodPost, "/v1/hosts/"+host+"/drain", map[string]any{"move_network": true}, &pr); err != nil {
		return fmt.Errorf("drain %s: move its routers and DHCP: %w", host, err)
	}
	fmt.Fprintf(w, "routers and DHCP servers of %s moved (epoch %d)\n", host, pr.Epoch)
	if len(left) > 0 {
		return fmt.Errorf("host %s is drained but not empty: %v", host, left)
	}
	fmt.Fprintf(w, "host %s is empty\n", host)
	return nil
}
