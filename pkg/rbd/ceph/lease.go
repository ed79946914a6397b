//go:build pacific

package ceph

import (
	"encoding/json"
	"fmt"
	"strconv"
	"syscall"
	"time"

	"github.com/strata-infra/strata/pkg/rbd"
)

const (
	leaseLock  = "strata-lease"
	epochXattr = "strata.epoch"
)

// Lease takes or renews an expiring exclusive RADOS lock on object oid in
// pool, as cookie (the host name). It returns whether this connection
// holds it and, when another does, who (cookie and address). A holder that
// dies stops renewing and the lock expires after ttl.
func (c *Conn) Lease(pool, oid, cookie string, ttl time.Duration) (held bool, holder rbd.LeaseHolder, err error) {
	io, err := c.ioctx(pool)
	if err != nil {
		return false, holder, err
	}
	defer io.Destroy()
	renew := byte(1) // LIBRADOS_LOCK_FLAG_MAY_RENEW
	ret, err := io.LockExclusive(oid, leaseLock, cookie, "strata storage controller", ttl, &renew)
	if err != nil {
		return false, holder, fmt.Errorf("lease %s/%s: %w", pool, oid, err)
	}
	if ret == 0 || syscall.Errno(-ret) == syscall.EEXIST {
		return true, rbd.LeaseHolder{Cookie: cookie}, nil // taken, or renewed
	}
	// EBUSY: another holds it; say who. An empty answer means it expired
	// in between: not held, try again on the next renewal.
	info, err := io.ListLockers(oid, leaseLock)
	if err != nil {
		return false, holder, fmt.Errorf("lease %s/%s: lockers: %w", pool, oid, err)
	}
	if info.NumLockers > 0 && len(info.Cookies) > 0 {
		holder = rbd.LeaseHolder{Cookie: info.Cookies[0]}
		if len(info.Addrs) > 0 {
			holder.Addr = info.Addrs[0]
		}
	}
	return false, holder, nil
}

// Holder reads who holds the lease, without trying to take it.
func (c *Conn) Holder(pool, oid string) (rbd.LeaseHolder, error) {
	io, err := c.ioctx(pool)
	if err != nil {
		return rbd.LeaseHolder{}, err
	}
	defer io.Destroy()
	info, err := io.ListLockers(oid, leaseLock)
	if err != nil {
		return rbd.LeaseHolder{}, fmt.Errorf("lease %s/%s: lockers: %w", pool, oid, err)
	}
	var h rbd.LeaseHolder
	if info.NumLockers > 0 && len(info.Cookies) > 0 {
		h.Cookie = info.Cookies[0]
		if len(info.Addrs) > 0 {
			h.Addr = info.Addrs[0]
		}
	}
	return h, nil
}

// ReleaseLease gives the lease up (a clean stop), so another host takes
// over without waiting for it to expire.
func (c *Conn) ReleaseLease(pool, oid, cookie string) error {
	io, err := c.ioctx(pool)
	if err != nil {
		return err
	}
	defer io.Destroy()
	if _, err := io.Unlock(oid, leaseLock, cookie); err != nil {
		return fmt.Errorf("release lease %s/%s: %w", pool, oid, err)
	}
	return nil
}

// BreakLease breaks holder's lease without waiting for it to expire: for
// a holder whose host is fenced, after its client is blocklisted. A lease
// already gone, or held by another by now, is left alone.
func (c *Conn) BreakLease(pool, oid string, holder rbd.LeaseHolder) error {
	io, err := c.ioctx(pool)
	if err != nil {
		return err
	}
	defer io.Destroy()
	info, err := io.ListLockers(oid, leaseLock)
	if err != nil {
		return fmt.Errorf("lease %s/%s: lockers: %w", pool, oid, err)
	}
	for i := range info.Cookies {
		if info.Cookies[i] != holder.Cookie || i >= len(info.Clients) || (i < len(info.Addrs) && info.Addrs[i] != holder.Addr) {
			continue
		}
		ret, err := io.BreakLock(oid, leaseLock, info.Clients[i], info.Cookies[i])
		if err == nil && ret < 0 && syscall.Errno(-ret) != syscall.ENOENT {
			err = syscall.Errno(-ret)
		}
		if err != nil {
			return fmt.Errorf("break the lease %s/%s of %s (%s): %w", pool, oid, holder.Cookie, holder.Addr, err)
		}
	}
	return nil
}

// FenceEpoch records that the lease holder acts on the plan at epoch and
// refuses (rbd.ErrStaleEpoch) when a holder before it already acted on a newer
// one: a controller fed by a coordinator that failed over to an older copy
// of the state must not undo newer work. Only the lease holder calls it.
func (c *Conn) FenceEpoch(pool, oid string, epoch uint64) error {
	prev, err := c.ActedEpoch(pool, oid)
	if err != nil {
		return err
	}
	if prev > epoch {
		return fmt.Errorf("plan epoch %d, but a controller already acted on epoch %d: %w", epoch, prev, rbd.ErrStaleEpoch)
	}
	io, err := c.ioctx(pool)
	if err != nil {
		return err
	}
	defer io.Destroy()
	if err := io.SetXattr(oid, epochXattr, []byte(strconv.FormatUint(epoch, 10))); err != nil {
		return fmt.Errorf("write fencing epoch of %s/%s: %w", pool, oid, err)
	}
	return nil
}

// ActedEpoch is the newest plan epoch a lease holder acted on (FenceEpoch),
// 0 when none did. Anyone may read it: a standby checks its plan is not
// older before it acts against the holder.
func (c *Conn) ActedEpoch(pool, oid string) (uint64, error) {
	io, err := c.ioctx(pool)
	if err != nil {
		return 0, err
	}
	defer io.Destroy()
	buf := make([]byte, 32)
	n, err := io.GetXattr(oid, epochXattr, buf)
	switch {
	case err == nil:
		if prev, perr := strconv.ParseUint(string(buf[:n]), 10, 64); perr == nil {
			return prev, nil
		}
		return 0, nil
	case errnoOf(err) == syscall.ENOENT || errnoOf(err) == syscall.ENODATA:
		return 0, nil // nothing recorded yet
	default:
		return 0, fmt.Errorf("read fencing epoch of %s/%s: %w", pool, oid, err)
	}
}

// Blocklist fences a client address out of the cluster: its in-flight and
// future writes are refused by the OSDs (used on a previous lease holder
// before taking over).
func (c *Conn) Blocklist(addr string) error {
	cmd, _ := json.Marshal(map[string]string{"prefix": "osd blocklist", "blocklistop": "add", "addr": addr})
	if _, st, err := c.rados.MonCommand(cmd); err != nil {
		return fmt.Errorf("blocklist %s: %w: %s", addr, err, st)
	}
	return nil
}

// Addr is this connection's client address, as lockers and watchers show it.
func (c *Conn) Addr() string {
	a, err := c.rados.GetAddrs()
	if err != nil {
		return ""
	}
	return a
}
