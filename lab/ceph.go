package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/strata-infra/strata/internal/cephtest"
)

// Ceph is how the lab's agents reach a Ceph cluster: every host gets the
// client config and runs the storage controller (one is active at a time),
// so an instance on RBD and its volumes may run on any of them.
type Ceph struct {
	MonHost string
	// User is the cephx id (without "client.") and Keyring its keyring.
	User, Keyring           string
	ImagesPool, VolumesPool string
	// Route, when set, is the cluster's subnet when it lies outside the
	// lab's underlay (a test's shared cluster on a bridge of its own):
	// each host routes it through the lab bridge, whose address is the
	// root namespace's, which owns the cluster's address too.
	Route netip.Prefix
}

// Lab's own cluster (RunCeph): its files, and its cephx user for Strata.
const (
	labCephUser = "strata"
	ImagesPool  = "images"
	VolumesPool = "volumes"
)

// StorageMonCaps are the mon caps of the lab's storage controller user:
// the rbd profile, and the blocklist commands a fence of a dead host
// needs (the profile may blocklist one client, not a whole address, nor
// lift an entry).
const StorageMonCaps = `profile rbd, allow command "osd blocklist", allow command "osd blocklist ls"`

// CephDir holds the lab's own cluster: config, keyrings, data, pid files.
func (l *Lab) CephDir() string { return filepath.Join(l.Dir, "ceph") }

// cephArgs are the agent flags of host i for the lab's Ceph.
func (l *Lab) cephArgs() []string {
	c := l.Ceph
	if c == nil {
		return nil
	}
	return []string{"--ceph-mon-host", c.MonHost, "--ceph-user", c.User, "--ceph-keyring", c.Keyring,
		"--images-pool", c.ImagesPool, "--volumes-pool", c.VolumesPool, "--storage-controller"}
}

// cephRoute routes the cluster's subnet from host i through the lab bridge.
func (l *Lab) cephRoute(i int) error {
	if l.Ceph == nil || !l.Ceph.Route.IsValid() || l.Ceph.Route.Overlaps(l.Subnet) {
		return nil
	}
	return ip("-n", l.Namespace(i), "route", "replace", l.Ceph.Route.Masked().String(), "via", l.BridgeAddr().String())
}

// UpCeph starts the lab's own single-node Ceph (mon, mgr, one bluestore
// OSD on a sparse file, pools images and volumes, cephx user
// client.strata) bound to the lab bridge's address, which every host
// namespace reaches, and sets l.Ceph for the agents. A cluster that an
// earlier run left running is reused; a partly running one is stopped
// and made again. The lab's network must be up (UpNetwork).
func (l *Lab) UpCeph(ctx context.Context) (reused bool, took time.Duration, err error) {
	start := time.Now()
	dir := l.CephDir()
	bridge := netip.PrefixFrom(l.BridgeAddr(), l.Subnet.Bits())
	keyring := filepath.Join(dir, "keyring.client."+labCephUser)
	if cephtest.RunningIn(dir) {
		if _, err := os.Stat(keyring); err == nil {
			l.setCeph(bridge, keyring)
			return true, time.Since(start), nil
		}
	}
	if err := cephtest.StopDir(dir); err != nil {
		return false, 0, err
	}
	if err := os.RemoveAll(dir); err != nil {
		return false, 0, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, 0, err
	}
	c, err := cephtest.Start(ctx, cephtest.Options{Dir: dir, Bridge: l.Bridge, Addr: bridge,
		Pools: []string{VolumesPool, ImagesPool}, Detach: true})
	if err != nil {
		return false, 0, fmt.Errorf("lab ceph: %w", err)
	}
	if _, err := c.CreateUser(ctx, "client."+labCephUser, "mon", StorageMonCaps, "osd", "profile rbd", "mgr", "profile rbd"); err != nil {
		cephtest.StopDir(dir)
		return false, 0, fmt.Errorf("lab ceph: %w", err)
	}
	l.setCeph(bridge, keyring)
	return false, time.Since(start), nil
}

func (l *Lab) setCeph(addr netip.Prefix, keyring string) {
	l.Ceph = &Ceph{MonHost: fmt.Sprintf("[v2:%s:%d,v1:%s:%d]", addr.Addr(), cephtest.MonPort, addr.Addr(), cephtest.MonPort+1),
		User: labCephUser, Keyring: keyring, ImagesPool: ImagesPool, VolumesPool: VolumesPool}
}

// CephConf is the lab's own cluster's ceph.conf (client.admin's keyring
// beside it), for the ceph and rbd commands: ceph -c $(CephConf) -s.
func (l *Lab) CephConf() string { return filepath.Join(l.CephDir(), "ceph.conf") }
