package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/api"
)

// TestLabHostDeathEvacuates: two hosts on the shared Ceph cluster, the
// coordinator's recovery grace 2 s. An instance booting from a clone in
// Ceph runs on h1 with a volume its guest keeps a record on. Then h1 dies
// entirely: its agent is SIGKILLed, its guests and libvirtd go, its
// underlay link goes down. Gossip declares it dead, the coordinator fences
// it (the storage controller blocklists its Ceph clients and records the
// fence), and only then evacuates the instance to h2, whose guest boots
// from the same volumes and reads the record back. The test prints the
// detection, fence and restart times after the kill and checks the fence
// was recorded before the move. About 4 minutes under TCG.
func TestLabHostDeathEvacuates(t *testing.T) {
	cl := newCephLab(t, 2, "--recovery-grace", "2s")
	const vm = "dying"
	stratactl(t, cl.Lab, nil, "images", "import", DemoRBDImage, cl.guest.Image)
	stratactl(t, cl.Lab, nil, "volumes", "-p", demoProject, "create", "data", "--size", "1")
	cl.waitResource(t, "volumes", "data", "available", testenv.Scale(60*time.Second))
	stratactl(t, cl.Lab, nil, "instances", "create", "-p", demoProject, vm, "--flavor", "tiny", "--image", DemoRBDImage,
		"--host", "h1", "--volume", "data")
	cl.waitResource(t, "instances", vm, "running", testenv.Scale(180*time.Second))
	record := cl.waitConsole(t, 1, vm, regexp.MustCompile(`strata-guest: volume vdb wrote (strata-record \S+)`), 1)[1]
	t.Logf("the guest on h1 wrote %q to volume data", record)

	d := killHostAndWaitFence(t, cl, 1)
	fence, fd := d.fenceName, d.detail
	t.Logf("fence %s: blocklisted %v, locks broken %v", fence, fd.Blocklisted, fd.BrokenLocks)

	r := cl.waitMoved(t, vm, "h1", testenv.Scale(120*time.Second))
	var s api.InstanceSpec
	json.Unmarshal(r.Spec, &s)
	if len(s.Evacuations) != 1 || s.Evacuations[0].Fence != fence || s.Evacuations[0].To != s.Host || s.Host != "h2" {
		t.Fatalf("instance on %s, evacuations %+v; want one evacuation to h2 after fence %s", s.Host, s.Evacuations, fence)
	}
	if ev := s.Evacuations[0]; ev.FencedAt.IsZero() || ev.FencedAt.After(r.Updated) || fd.FencedAt.After(r.Updated) {
		t.Fatalf("the move (committed %s) does not come after the recorded fence (%s, evacuation says %s)", r.Updated, fd.FencedAt, ev.FencedAt)
	}
	cl.waitResource(t, "instances", vm, "running", testenv.Scale(180*time.Second))
	cl.waitConsole(t, 2, vm, regexp.MustCompile(`strata-guest: volume vdb holds `+regexp.QuoteMeta(record)+`\b`), 1)
	back := time.Since(d.killed)
	t.Logf("h1 killed at 0s: dead in gossip at %s, fenced at %s, moved to h2 at %s, the guest on h2 read the record at %s",
		d.detect.Round(100*time.Millisecond), d.fence.Round(100*time.Millisecond),
		r.Updated.Sub(d.killed).Round(100*time.Millisecond), back.Round(100*time.Millisecond))
}

// waitMoved waits until instance name is placed on a host other than from.
func (cl *cephLab) waitMoved(t testing.TB, name, from string, limit time.Duration) api.Resource {
	t.Helper()
	var r api.Resource
	testenv.WaitTrue(t, limit, fmt.Sprintf("instance %s moved off %s", name, from), func() bool {
		var err error
		r, err = cl.resource(t, "instances", name)
		var s api.InstanceSpec
		return err == nil && json.Unmarshal(r.Spec, &s) == nil && s.Host != "" && s.Host != from
	})
	return r
}

func (cl *cephLab) spec(t testing.TB, name string) api.InstanceSpec {
	t.Helper()
	r, err := cl.resource(t, "instances", name)
	if err != nil {
		t.Fatal(err)
	}
	var s api.InstanceSpec
	json.Unmarshal(r.Spec, &s)
	return s
}

// death is when a host was killed, and how long after it gossip declared
// it dead and the fence was recorded.
type death struct {
	killed        time.Time
	detect, fence time.Duration
	fenceName     string
	fenced        time.Time
	detail        api.FenceDetail
}

// killHostAndWaitFence kills host i entirely (its agent SIGKILLed, its
// guests and libvirtd gone, its underlay link down) and waits for gossip
// to declare it dead and for a fence of it to be recorded in force.
func killHostAndWaitFence(t testing.TB, cl *cephLab, i int) death {
	t.Helper()
	host := cl.HostName(i)
	d := death{killed: time.Now()}
	if err := cl.StopAgent(i, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cl.lvs[i].KillGuests()
	if err := cl.lvs[i].Daemon.Stop(); err != nil {
		t.Logf("libvirtd of %s: %v", host, err)
	}
	if err := ip("link", "set", fmt.Sprintf("%s%s", cl.Short, host), "down"); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s killed: agent SIGKILLed, guests and libvirtd gone, underlay link down", host)
	return waitFence(t, cl, host, d.killed)
}

// waitFence waits for gossip to declare host dead and for a fence of it
// to be recorded in force; times count from since.
func waitFence(t testing.TB, cl *cephLab, host string, since time.Time) death {
	t.Helper()
	d := death{killed: since}
	waitCLI(t, cl.Lab, 60*time.Second, host+" dead in gossip", hostState(host, api.StateDead))
	c, err := cl.Client()
	if err != nil {
		t.Fatal(err)
	}
	var h api.Host
	if err := c.Do(context.Background(), "GET", "/v1/hosts/"+host, nil, &h); err != nil {
		t.Fatal(err)
	}
	d.detect = h.StateSince.Sub(d.killed)
	testenv.WaitTrue(t, testenv.Scale(90*time.Second), "a fence of "+host+" recorded in force", func() bool {
		var fs []api.Resource
		if err := c.Do(context.Background(), "GET", "/v1/fences", nil, &fs); err != nil {
			return false
		}
		for _, f := range fs {
			var s api.FenceSpec
			json.Unmarshal(f.Spec, &s)
			if s.Host != host || s.Released || f.Status == nil || f.Status.State != api.FenceFenced || f.Status.Epoch < f.Epoch {
				continue
			}
			d.detail = api.FenceDetail{}
			json.Unmarshal(f.Status.Detail, &d.detail)
			d.fenceName, d.fenced = f.Name, d.detail.FencedAt
			return !d.fenced.IsZero()
		}
		return false
	})
	d.fence = d.fenced.Sub(d.killed)
	return d
}
