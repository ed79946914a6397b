package main

import (
	"crypto/sha256"
	"fmt"
	"log/slog"
	"sync"

	"github.com/strata-infra/strata/agent/config"
	"github.com/strata-infra/strata/agent/storage/attach"
	"github.com/strata-infra/strata/pkg/rbd"
)

// volumeAttacher is how this host's instances get their RBD volumes:
// librbd network disks through libvirt, each claimed first (fencing) over
// the host's own Ceph connection. Nil without Ceph in the config.
func volumeAttacher(cfg *config.Config, log *slog.Logger) (*attach.Host, error) {
	if !cfg.Storage.Enabled() {
		return nil, nil
	}
	s := cfg.Storage
	mons, err := attach.ParseMonHost(s.Ceph.MonHost)
	if err != nil {
		return nil, fmt.Errorf("storage.ceph.mon_host: %w", err)
	}
	lv, err := attach.New(cfg.Compute.LibvirtSocket, attach.Client{Monitors: mons, User: s.Ceph.User,
		Keyring: s.Ceph.Keyring, SecretUUID: secretUUID(s.Ceph.User)})
	if err != nil {
		return nil, err
	}
	cc := &cephConn{cfg: rbdConfig(s)}
	return attach.NewHost(lv, cc.claim, log), nil
}

// secretUUID names the libvirt secret of a cephx user, the same on every
// start so that it is redefined, never duplicated.
func secretUUID(user string) string {
	b := sha256.Sum256([]byte("strata ceph secret client." + user))
	b[6] = b[6]&0x0f | 0x50
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// cephConn is one lazily opened connection, opened again after a failure.
type cephConn struct {
	cfg  rbd.Config
	mu   sync.Mutex
	conn *rbd.Conn
}

func (c *cephConn) claim(pool, image string) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		conn, err := rbd.Connect(c.cfg)
		if err != nil {
			return nil, fmt.Errorf("ceph unreachable: %w", err)
		}
		c.conn = conn
	}
	broke, err := c.conn.Claim(rbd.Ref{Pool: pool, Image: image})
	if err != nil && !rbd.Supported {
		c.conn = nil
	}
	return broke, err
}
