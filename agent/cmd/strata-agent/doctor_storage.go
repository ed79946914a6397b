package main

import (
	"fmt"
	"os"

	"github.com/strata-infra/strata/agent/config"
	"github.com/strata-infra/strata/agent/doctor"
	"github.com/strata-infra/strata/pkg/rbd"
)

// qemuRBD is qemu's rbd block driver module (Debian: qemu-block-extra),
// without which libvirt cannot open <source protocol='rbd'> disks.
var qemuRBD = []string{"/usr/lib/x86_64-linux-gnu/qemu/block-rbd.so", "/usr/lib64/qemu/block-rbd.so"}

// storageChecks checks the host's Ceph configuration: the keyring, that
// the monitors accept the user, that both pools exist and can be listed,
// and qemu's rbd driver. Nothing when the host is not configured for Ceph.
func storageChecks(s config.Storage) []doctor.Result {
	if !s.Enabled() {
		return nil
	}
	var rs []doctor.Result
	build := doctor.Result{Check: "ceph:helper", Required: true, Status: doctor.OK}
	if p, err := rbd.HelperPath(); err != nil {
		build.Status, build.Detail, build.Fix = doctor.Missing, err.Error(), "install strata-rbd (the strata-agent package puts it at "+rbd.HelperInstallPath+"; `make build` beside strata-agent in bin/)"
	} else {
		build.Detail = p
	}
	rs = append(rs, build)
	key := doctor.Result{Check: "ceph:keyring", Required: true, Status: doctor.OK, Detail: s.Ceph.Keyring}
	if fi, err := os.Stat(s.Ceph.Keyring); err != nil {
		key.Status, key.Detail, key.Fix = doctor.Missing, err.Error(), "ceph auth get-or-create client."+s.Ceph.User+" mon 'profile rbd' osd 'profile rbd' -o "+s.Ceph.Keyring
	} else if fi.Mode().Perm()&0o077 != 0 {
		key.Status, key.Detail, key.Fix = doctor.Warn, fmt.Sprintf("%s is mode %o", s.Ceph.Keyring, fi.Mode().Perm()), "chmod 600 "+s.Ceph.Keyring
	}
	rs = append(rs, key)
	qemu := doctor.Result{Check: "qemu:block-rbd", Required: true, Status: doctor.Missing, Detail: "none of " + fmt.Sprint(qemuRBD), Fix: "apt install qemu-block-extra / dnf install qemu-block-rbd"}
	for _, p := range qemuRBD {
		if _, err := os.Stat(p); err == nil {
			qemu.Status, qemu.Detail, qemu.Fix = doctor.OK, p, ""
		}
	}
	rs = append(rs, qemu)
	mon := doctor.Result{Check: "ceph:monitors", Required: true, Status: doctor.OK,
		Detail: fmt.Sprintf("%s accepts client.%s", s.Ceph.MonHost, s.Ceph.User)}
	conn, err := rbd.Connect(rbdConfig(s))
	if err != nil {
		mon.Status, mon.Detail, mon.Fix = doctor.Missing, err.Error(), "check storage.ceph.mon_host, the user's key and that the monitors are up"
		return append(rs, mon)
	}
	defer conn.Close()
	rs = append(rs, mon)
	for _, pool := range []string{s.ImagesPool, s.VolumesPool} {
		r := doctor.Result{Check: "ceph:pool:" + pool, Required: true, Status: doctor.OK, Detail: "exists, images listable"}
		if err := conn.CheckPool(pool); err != nil {
			r.Status, r.Detail, r.Fix = doctor.Missing, err.Error(), fmt.Sprintf("ceph osd pool create %s && rbd pool init %s, and give client.%s 'profile rbd' on it", pool, pool, s.Ceph.User)
		}
		rs = append(rs, r)
	}
	return rs
}
