package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/strata-infra/strata/pkg/api"
)

// DemoDrain shows host maintenance: the host running instance name (of
// project) is drained with --migrate live, so the running guest moves to
// another host while it runs (its disks are in Ceph), with stratactl's
// progress lines; then the host is enabled again. It fails when the
// instance is not running on another host afterwards.
func (l *Lab) DemoDrain(ctx context.Context, w io.Writer, project, name string) error {
	c, err := l.Client()
	if err != nil {
		return err
	}
	var r api.Resource
	if err := c.Do(ctx, http.MethodGet, "/v1/projects/"+project+"/instances/"+name, nil, &r); err != nil {
		return err
	}
	var s api.InstanceSpec
	json.Unmarshal(r.Spec, &s)
	from := s.Host
	show := func(args ...string) error {
		fmt.Fprintf(w, "$ stratactl %s\n", strings.Join(args, " "))
		out, err := l.CtlText(args...)
		w.Write([]byte(out))
		return err
	}
	start := time.Now()
	if err := show("hosts", "drain", from, "--migrate", "live", "--reason", "demo maintenance"); err != nil {
		return err
	}
	took := time.Since(start)
	err = waitFor(ctx, time.Minute, fmt.Sprintf("%s running on another host than %s", name, from), func() error {
		r, s = api.Resource{}, api.InstanceSpec{}
		if err := c.Do(ctx, http.MethodGet, "/v1/projects/"+project+"/instances/"+name, nil, &r); err != nil {
			return err
		}
		json.Unmarshal(r.Spec, &s)
		if s.Host == from || r.Status == nil || r.Status.Epoch < r.Epoch || r.Status.Host != s.Host || r.Status.State != "running" {
			return fmt.Errorf("on %q, status %+v", s.Host, r.Status)
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "  %s moved live from %s to %s in %s, running all along; %s is empty\n", name, from, s.Host, took.Round(100*time.Millisecond), from)
	return show("hosts", "enable", from)
}

// DemoMaintenance is make lab's drain step, after the storage demo: the
// host running the storage demo's guest (booted from an RBD clone, a
// volume hot-plugged) is drained with --migrate live (DemoDrain), then
// enabled again. The scheduling demo's instances on that host go first:
// they are stopped on local disks, and the anti-affinity group web, one
// member per host, leaves them nowhere to go.
func (l *Lab) DemoMaintenance(ctx context.Context, w io.Writer) error {
	c, err := l.Client()
	if err != nil {
		return err
	}
	var r api.Resource
	if err := c.Do(ctx, http.MethodGet, "/v1/projects/"+demoProject+"/instances/"+demoVM, nil, &r); err != nil {
		return err
	}
	var s api.InstanceSpec
	json.Unmarshal(r.Spec, &s)
	var projects, sched []api.Resource
	if err := c.Do(ctx, http.MethodGet, "/v1/projects", nil, &projects); err != nil {
		return err
	}
	for _, p := range projects {
		if p.Name != demoSchedProject {
			continue
		}
		if err := c.Do(ctx, http.MethodGet, "/v1/projects/"+demoSchedProject+"/instances", nil, &sched); err != nil {
			return err
		}
	}
	for _, o := range sched {
		var on api.InstanceSpec
		if json.Unmarshal(o.Spec, &on) != nil || on.Host != s.Host {
			continue
		}
		args := []string{"instances", "delete", "-p", demoSchedProject, o.Name}
		fmt.Fprintf(w, "$ stratactl %s   # stopped on a local disk; group web has no other host for it\n", strings.Join(args, " "))
		out, err := l.CtlText(args...)
		w.Write([]byte(out))
		if err != nil {
			return err
		}
	}
	return l.DemoDrain(ctx, w, demoProject, demoVM)
}
