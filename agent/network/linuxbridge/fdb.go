package linuxbridge

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/strata-infra/strata/agent/network/internal/nlink"
	"github.com/strata-infra/strata/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

var zeroMAC = net.HardwareAddr{0, 0, 0, 0, 0, 0}

// readTunnels reads the FDB and proxy-neighbour entries of the given VXLAN
// devices with one dump per table.
func (d *Driver) readTunnels(vxlans map[uint32]netlink.Link) (map[int]Tunnel, error) {
	have := make(map[int]Tunnel, len(vxlans))
	for _, l := range vxlans {
		have[l.Attrs().Index] = newTunnel()
	}
	fdb, err := netlinksafe.NeighList(d.h, 0, unix.AF_BRIDGE)
	if err != nil {
		return nil, fmt.Errorf("dump fdb: %w", err)
	}
	for _, e := range fdb {
		t, ok := have[e.LinkIndex]
		ip, okIP := netip.AddrFromSlice(e.IP)
		if !ok || e.Flags&netlink.NTF_SELF == 0 || e.Flags&netlink.NTF_MASTER != 0 || !okIP {
			continue
		}
		if e.HardwareAddr.String() == zeroMAC.String() {
			t.BUM[ip.Unmap()] = true
		} else {
			t.FDB[e.HardwareAddr.String()] = ip.Unmap()
		}
	}
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		neighs, err := netlinksafe.NeighList(d.h, 0, fam)
		if err != nil {
			return nil, fmt.Errorf("dump neighbours: %w", err)
		}
		for _, n := range neighs {
			t, ok := have[n.LinkIndex]
			ip, okIP := netip.AddrFromSlice(n.IP)
			if !ok || !okIP || n.State&netlink.NUD_PERMANENT == 0 {
				continue
			}
			t.Neigh[ip.Unmap()] = n.HardwareAddr.String()
		}
	}
	return have, nil
}

// syncTunnels applies the difference between the plan and the entries on
// each VXLAN device.
func (d *Driver) syncTunnels(ctx context.Context, plan Plan, vxlans map[uint32]netlink.Link) error {
	have, err := d.readTunnels(vxlans)
	if err != nil {
		return err
	}
	var errs []error
	for vni, l := range vxlans {
		if err := ctx.Err(); err != nil {
			return err
		}
		for _, op := range Diff(plan[vni], have[l.Attrs().Index]) {
			if err := d.apply(l, op); err != nil {
				errs = append(errs, fmt.Errorf("vxlan %q: %w", l.Attrs().Name, err))
				continue
			}
			d.changes.Add(1)
		}
	}
	return joinErrs(errs)
}

func (d *Driver) apply(l netlink.Link, op Op) error {
	idx := l.Attrs().Index
	mac, _ := net.ParseMAC(op.MAC)
	fdb := &netlink.Neigh{
		LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF,
		State: netlink.NUD_PERMANENT | netlink.NUD_NOARP, HardwareAddr: mac, IP: net.IP(op.Addr.AsSlice()),
	}
	neigh := &netlink.Neigh{
		LinkIndex: idx, Family: family(op.Addr), State: netlink.NUD_PERMANENT,
		HardwareAddr: mac, IP: net.IP(op.Addr.AsSlice()),
	}
	var err error
	switch op.Kind {
	case SetFDB:
		err = d.h.NeighSet(fdb)
	case AddBUM:
		fdb.HardwareAddr = zeroMAC
		err = d.h.NeighAppend(fdb)
	case SetNeigh:
		err = d.h.NeighSet(neigh)
	case DelNeigh:
		err = forgive(d.h.NeighDel(neigh))
	case DelBUM:
		fdb.HardwareAddr = zeroMAC
		err = forgive(d.h.NeighDel(fdb))
	case DelFDB:
		err = forgive(d.h.NeighDel(fdb))
	}
	if err != nil {
		return fmt.Errorf("%s %s %s: %w", op.Kind, op.MAC, op.Addr, err)
	}
	return nil
}

// forgive makes deleting what is already gone a success.
func forgive(err error) error {
	if err != nil && nlink.IsNotFound(err) {
		return nil
	}
	return err
}

func family(a netip.Addr) int {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

func (k OpKind) String() string {
	return [...]string{"set fdb", "add bum", "set neigh", "del neigh", "del bum", "del fdb"}[k]
}
