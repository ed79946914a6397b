package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/strata-infra/strata/pkg/api"
)

// The storage demo's names: an image in Ceph, an instance booting from a
// clone of it, a volume, its snapshot and a clone of that, in project
// demo-a.
const (
	demoProject  = "demo-a"
	DemoRBDImage = "guest-rbd"
	demoVM       = "rbd-vm"
)

// DemoStorage shows Ceph at work, where the lab runs Ceph and compute:
// the test guest's image imported into the images pool (stratactl images
// import), an instance booting from a copy-on-write clone of it, a volume
// made and hot-plugged into the running guest, which writes a record to
// it (its console line is printed), then a snapshot of the volume and a
// volume cloned from the snapshot. It prints what stratactl answers and
// fails when a step does not happen.
func (l *Lab) DemoStorage(ctx context.Context, w io.Writer, guestImage string) error {
	show := func(args ...string) error {
		fmt.Fprintf(w, "$ stratactl %s\n", strings.Join(args, " "))
		out, err := l.CtlText(args...)
		w.Write([]byte(out))
		return err
	}
	c, err := l.Client()
	if err != nil {
		return err
	}
	if c.Do(ctx, http.MethodGet, "/v1/projects/"+demoProject+"/instances/"+demoVM, nil, nil) == nil {
		// An earlier make lab made all of it.
		return show("volumes", "-p", demoProject, "list")
	}
	if c.Do(ctx, http.MethodGet, "/v1/images/"+DemoRBDImage, nil, nil) != nil {
		if err := show("images", "import", DemoRBDImage, guestImage); err != nil {
			return err
		}
	}
	if err := show("instances", "create", "-p", demoProject, demoVM, "--flavor", "tiny", "--image", DemoRBDImage); err != nil {
		return err
	}
	r, err := l.waitState(ctx, "instances", demoVM, "running", 3*time.Minute)
	if err != nil {
		return err
	}
	var s api.InstanceSpec
	json.Unmarshal(r.Spec, &s)
	console := filepath.Join(l.Dir, s.Host, "compute", "instances", api.InstanceID(demoProject, demoVM), "console.log")
	line, err := waitLine(ctx, console, regexp.MustCompile(`strata-guest: disk vda \d+ sectors`))
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "  %s booted on %s from %s (a copy-on-write clone of %s); its console: %q\n", demoVM, s.Host, s.RootVolume, DemoRBDImage, line)
	if err := show("volumes", "-p", demoProject, "create", "data", "--size", "1"); err != nil {
		return err
	}
	if _, err := l.waitState(ctx, "volumes", "data", "available", time.Minute); err != nil {
		return err
	}
	if err := show("instances", "attach-volume", "-p", demoProject, demoVM, "data"); err != nil {
		return err
	}
	line, err = waitLine(ctx, console, regexp.MustCompile(`strata-guest: volume vdb (wrote|holds) strata-record \S+`))
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "  the guest sees the hot-plugged volume as vdb and keeps a record on it: %q\n", line)
	if err := show("snapshots", "-p", demoProject, "create", "data-snap", "--volume", "data"); err != nil {
		return err
	}
	if err := show("volumes", "-p", demoProject, "create", "data-clone", "--size", "1", "--snapshot", "data-snap"); err != nil {
		return err
	}
	if _, err := l.waitState(ctx, "volumes", "data-clone", "available", time.Minute); err != nil {
		return err
	}
	return show("volumes", "-p", demoProject, "list")
}

// waitState waits until the resource of demoProject (kind as stratactl
// names it) is reported in state at its current epoch.
func (l *Lab) waitState(ctx context.Context, kind, name, state string, limit time.Duration) (api.Resource, error) {
	var r api.Resource
	err := waitFor(ctx, limit, fmt.Sprintf("%s %s/%s %s", kind, demoProject, name, state), func() error {
		r = api.Resource{}
		if err := l.Ctl(&r, kind, "show", "-p", demoProject, name); err != nil {
			return err
		}
		if r.Status == nil || r.Status.Epoch < r.Epoch || r.Status.State != state {
			return fmt.Errorf("status %+v", r.Status)
		}
		return nil
	})
	return r, err
}

// waitLine waits for a line matching re in the file (a guest's console
// log on its host) and returns it.
func waitLine(ctx context.Context, path string, re *regexp.Regexp) (string, error) {
	var line string
	err := waitFor(ctx, 4*time.Minute, fmt.Sprintf("%q in %s", re, path), func() error {
		b, _ := os.ReadFile(path)
		if line = re.FindString(string(b)); line == "" {
			return fmt.Errorf("not there yet")
		}
		return nil
	})
	return line, err
}
