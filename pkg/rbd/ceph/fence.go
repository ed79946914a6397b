//go:build pacific

package ceph

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"time"

	librbd "github.com/ceph/go-ceph/rbd"

	"github.com/strata-infra/strata/pkg/rbd"
)

// BlocklistFor puts addr on the OSD blocklist for expire (an IP fences every
// client of that address; ip:port/nonce one client). Adding an address that
// is already there sets its expiry anew. Fencing a whole address and
// removing entries take more than the rbd profile grants: the controller's
// user needs `mon 'profile rbd, allow command "osd blocklist"'`.
func (c *Conn) BlocklistFor(addr string, expire time.Duration) error {
	args := map[string]any{"prefix": "osd blocklist", "blocklistop": "add", "addr": addr}
	if expire > 0 {
		// A float the monitor reads as one: "3600.0", never "3600".
		args["expire"] = json.Number(fmt.Sprintf("%.1f", math.Ceil(expire.Seconds())))
	}
	cmd, _ := json.Marshal(args)
	if _, st, err := c.rados.MonCommand(cmd); err != nil {
		return fmt.Errorf("blocklist %s: %w: %s", addr, err, st)
	}
	return nil
}

// Unblocklist removes addr from the OSD blocklist; an address that is not
// there is removed already.
func (c *Conn) Unblocklist(addr string) error {
	cmd, _ := json.Marshal(map[string]string{"prefix": "osd blocklist", "blocklistop": "rm", "addr": addr})
	if _, st, err := c.rados.MonCommand(cmd); err != nil {
		return fmt.Errorf("remove %s from the blocklist: %w: %s", addr, err, st)
	}
	return nil
}

// Blocklisted returns the OSD blocklist: each entry's address (as Ceph
// prints it, "10.0.0.7:0/0" for a whole IP) and when it lapses.
func (c *Conn) Blocklisted() (map[string]time.Time, error) {
	cmd, _ := json.Marshal(map[string]string{"prefix": "osd blocklist ls", "format": "json"})
	out, st, err := c.rados.MonCommand(cmd)
	if err != nil {
		return nil, fmt.Errorf("list the blocklist: %w: %s", err, st)
	}
	var entries []struct {
		Addr  string `json:"addr"`
		Until string `json:"until"`
	}
	// The entries, then (a second array) the range entries, which
	// Strata never makes.
	if err := json.NewDecoder(bytes.NewReader(out)).Decode(&entries); err != nil {
		return nil, fmt.Errorf("list the blocklist: %w: %.200q", err, out)
	}
	m := make(map[string]time.Time, len(entries))
	for _, e := range entries {
		m[e.Addr] = parseCephTime(e.Until)
	}
	return m, nil
}

// parseCephTime reads the monitor's "2026-11-29T08:40:01.123456+0000";
// the zero time when it cannot.
func parseCephTime(s string) time.Time {
	for _, layout := range []string{"2006-01-02T15:04:05.999999-0700", "2006-01-02 15:04:05.999999", time.RFC3339Nano} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}

// Holders returns who has r open (watchers) and who holds its exclusive
// lock, reading nothing else: a fuller read (Status's usage) may make
// librbd take the lock itself from a blocklisted owner.
func (c *Conn) Holders(r rbd.Ref) (watchers, owners []string, err error) {
	r.Snap = ""
	img, done, err := c.open(r)
	if err != nil {
		return nil, nil, err
	}
	defer done()
	ws, err := img.ListWatchers()
	if err != nil {
		return nil, nil, fmt.Errorf("watchers of %s: %w", r, mapErr(r, err))
	}
	for _, w := range ws {
		watchers = append(watchers, w.Addr)
	}
	os, err := img.LockGetOwners()
	if err != nil {
		return nil, nil, fmt.Errorf("lock owners of %s: %w", r, mapErr(r, err))
	}
	for _, o := range os {
		owners = append(owners, o.Owner)
	}
	return watchers, owners, nil
}

// BreakLock breaks the exclusive lock owner holds on r (an owner already
// gone counts as broken). The caller blocklists the owner first.
func (c *Conn) BreakLock(r rbd.Ref, owner string) error {
	r.Snap = ""
	img, done, err := c.open(r)
	if err != nil {
		return err
	}
	defer done()
	owners, err := img.LockGetOwners()
	if err != nil {
		return fmt.Errorf("lock owners of %s: %w", r, mapErr(r, err))
	}
	for _, o := range owners {
		if o.Owner != owner {
			continue
		}
		if err := img.LockBreak(librbd.LockModeExclusive, owner); err != nil {
			return fmt.Errorf("break the lock of %s held by %s: %w", r, owner, mapErr(r, err))
		}
	}
	return nil
}
