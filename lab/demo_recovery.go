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
