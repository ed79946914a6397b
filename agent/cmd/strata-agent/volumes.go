package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/strata-infra/strata/agent/config"
	"github.com/strata-infra/strata/agent/storage/attach"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/rbd"
)

// volumeAttacher is how this host's instances get their RBD volumes:
// librbd network disks through libvirt, each claimed first (fencing) over
// the host's own Ceph connection. Nil without Ceph in the config.
func volumeAttacher(cfg *config.Config, log *slog.Logger) (*attach.Host, *cephConn, error) {
	if !cfg.Storage.Enabled() {
		return nil, nil, nil
	}
	s := cfg.Storage
	mons, err := attach.ParseMonHost(s.Ceph.MonHost)
	if err != nil {
		return nil, nil, fmt.Errorf("storage.ceph.mon_host: %w", err)
	}
	lv, err := attach.New(cfg.Compute.LibvirtSocket, attach.Client{Monitors: mons, User: s.Ceph.User,
		Keyring: s.Ceph.Keyring, SecretUUID: secretUUID(s.Ceph.User)})
	if err != nil {
		return nil, nil, err
	}
	cc := &cephConn{cfg: rbdConfig(s)}
	return attach.NewHost(lv, cc.claim, log), cc, nil
}

// secretUUID names the libvirt secret of a cephx user, the same on every
// start so that it is redefined, never duplicated.
func secretUUID(user string) string {
	b := sha256.Sum256([]byte("strata ceph secret client." + user))
	b[6] = b[6]&0x0f | 0x50
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// cephConn is one lazily opened connection, opened again after a failure
// (a connection that was blocklisted while its host was fenced stays
// refused: only a new one works once the fence is lifted).
type cephConn struct {
	cfg  rbd.Config
	mu   sync.Mutex
	conn *rbd.Conn
	// addr is the last connection's client address: this host's
	// qemu clients use the same IP, which a fence of the host blocklists.
	addr string
}

func (c *cephConn) connect() (*rbd.Conn, error) {
	if c.conn == nil {
		conn, err := rbd.Connect(c.cfg)
		if err != nil {
			return nil, fmt.Errorf("ceph unreachable: %w", err)
		}
		c.conn = conn
		if a := conn.Addr(); a != "" {
			c.addr = a
		}
	}
	return c.conn, nil
}

func (c *cephConn) claim(pool, image string) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	conn, err := c.connect()
	if err != nil {
		return nil, err
	}
	broke, err := conn.Claim(rbd.Ref{Pool: pool, Image: image})
	if err != nil && !errors.Is(err, rbd.ErrInUse) {
		c.conn.Close()
		c.conn = nil
	}
	return broke, err
}

// Keep connects at start and again every interval until it has an
// address to report, so that a host whose instances run on Ceph says
// where its clients come from before anything needs fencing.
func (c *cephConn) Keep(ctx context.Context) {
	for {
		c.mu.Lock()
		have := c.conn != nil
		c.mu.Unlock()
		if have {
			return
		}
		// Connected outside the lock: a report never waits on Ceph.
		if conn, err := rbd.Connect(c.cfg); err == nil {
			c.mu.Lock()
			if c.conn == nil {
				c.conn, c.addr = conn, conn.Addr()
			} else {
				conn.Close()
			}
			c.mu.Unlock()
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Second):
		}
	}
}

// Report adds the host's Ceph client address to its status report.
func (c *cephConn) Report(rep *api.HostReport) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.addr == "" {
		return
	}
	if rep.Storage == nil {
		rep.Storage = &api.StorageHost{}
	}
	rep.Storage.ClientAddrs = append(rep.Storage.ClientAddrs, c.addr)
}
