package lab

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// The cache demo's names, in project demo-a.
const (
	demoCacheType   = "cached"
	demoCacheVolume = "cached-data"
)

// DemoCache shows what this machine can of krbd volumes and their host SSD
// cache, and says plainly what it cannot: the cache is device-mapper
// (dm-writecache, dm-cache) over a krbd mapping, and this kernel has
// neither, so no lab host maps a volume. The demo makes a cached volume
// type and a volume of it, shows the API refusing what no host could do
// with one (boot from it), and names the guest test that proves the rest
// in a TCG guest with Debian's kernel. It fails when the API accepts the
// refusal's request. flavor tiny must exist (DemoScheduling makes it).
func (l *Lab) DemoCache(ctx context.Context, w io.Writer) error {
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
	if c.Do(ctx, http.MethodGet, "/v1/volumetypes/"+demoCacheType, nil, nil) != nil {
		if err := show("volumetypes", "create", demoCacheType, "--pool", "volumes", "--attach-mode", "krbd",
			"--cache-mode", "writeback", "--cache-size-mib", "64", "--cache-max-dirty-seconds", "15"); err != nil {
			return err
		}
	}
	if c.Do(ctx, http.MethodGet, "/v1/projects/"+demoProject+"/volumes/"+demoCacheVolume, nil, nil) != nil {
		if err := show("volumes", "-p", demoProject, "create", demoCacheVolume, "--size", "1", "--type", demoCacheType); err != nil {
			return err
		}
	}
	args := []string{"instances", "create", "-p", demoProject, "cached-boot", "--flavor", "tiny", "--boot-volume", demoCacheVolume}
	fmt.Fprintf(w, "$ stratactl %s\n", strings.Join(args, " "))
	out, err := l.CtlText(args...)
	w.Write([]byte(out))
	if err == nil || !strings.Contains(out, "spec.boot_volume") {
		return fmt.Errorf("booting from a krbd volume: want a refusal naming spec.boot_volume, got %v", err)
	}
	fmt.Fprint(w, `  Refused, nothing changed: an instance attaches a krbd volume (spec.volumes: a block disk on
  /dev/mapper/strata-<image>, its cache's device) but boots only from a librbd one.
  This machine's kernel has neither krbd nor device-mapper, so no lab host can map `+demoCacheVolume+`:
  attached to an instance here, it would be reported in the instance's status ("this host has no krbd").
  What the cache does is proven in a TCG guest with Debian's kernel, against a Ceph cluster on this host:
    go test -tags pacific -run TestCachedVolumesInGuest ./agent/storage/cachedvol/guesttest
  maps volumes as the compute driver does before a hot-plug and checks the block device the domain would
  open; writes through writeback caches and detaches (also with the agent SIGKILLed mid-flush), snapshots
  under writes (also an attached volume's, which its host takes from the plan: cache written back with
  the dirty blocks left in the snapshot's status, writes held, snapshot made), crashes the guest with
  dirty blocks and reassembles the cache in a second boot, carves a cache from an LVM volume group,
  cleans an idle volume's cache, and fails cache devices, wholly or only their last MiB (found by the
  agent's patrol reads): writethrough falls back, writeback refuses writes with the bytes at risk; the
  host then reads every image back. The hot-plug itself, through a real libvirtd into a running TCG
  guest, of a block disk on /dev/mapper/strata-<image> (a loop device here):
    go test -tags pacific -run TestKernelDiskHotPlug ./agent/storage/attach
`)
	return nil
}
