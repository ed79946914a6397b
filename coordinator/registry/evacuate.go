package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/computespec"
	"github.com/strata-infra/strata/pkg/storagespec"
)

// RecordedFence returns when the active storage controller recorded fence
// name of host in force: its status says "fenced" at the fence's current
// epoch. Anything else (no such fence, another host's, released, not yet
// applied, an error) is a refusal: nothing is rebuilt without it.
func RecordedFence(tx *store.Tx, name, host string) (time.Time, error) {
	res, err := tx.Get(api.Key{Kind: "fence", Name: name})
	if errors.Is(err, store.ErrNotFound) {
		return time.Time{}, Conflictf("fence %q does not exist: nothing of host %s is rebuilt without a recorded fence", name, host)
	}
	if err != nil {
		return time.Time{}, err
	}
	fs := decode[api.FenceSpec](res)
	if fs.Host != host || fs.Released {
		return time.Time{}, Conflictf("fence %q is not a fence of host %s in force", name, host)
	}
	for _, st := range tx.HostStatuses(res.Key()) {
		if st.State != api.FenceFenced || st.Epoch != res.Epoch {
			continue
		}
		var d api.FenceDetail
		_ = json.Unmarshal(st.Detail, &d)
		if d.FencedAt.IsZero() {
			d.FencedAt = st.Updated
		}
		return d.FencedAt, nil
	}
	return time.Time{}, Conflictf("fence %q of host %s is not recorded in force yet: nothing is rebuilt before", name, host)
}

// DirtyCache sums what the host last said its SSD cache held dirty for the
// instance's volumes: data that is on that host, not in Ceph. It reads the
// host's last report (volume_caches, the krbd cache's counts) and the
// instance's status detail (volume_cache).
func DirtyCache(tx *store.Tx, k api.Key, host string) (blocks, bytes uint64, vols []string) {
	if rep, ok := tx.Report(host); ok {
		res, err := tx.Get(k)
		if err == nil {
			s := decode[api.InstanceSpec](res)
			mine := map[string]string{}
			for _, v := range append([]string{s.RootVolume, s.BootVolume}, s.Volumes...) {
				if v != "" {
					mine[storagespec.VolumeImage(k.Project, v)] = v
				}
			}
			for _, c := range rep.VolumeCaches {
				img := c.Image[strings.LastIndexByte(c.Image, '/')+1:]
				if v, ok := mine[img]; ok && (c.DirtyBlocks > 0 || c.DirtyBytes > 0) {
					blocks += uint64(max(c.DirtyBlocks, 0))
					bytes += uint64(max(c.DirtyBytes, 0))
					vols = append(vols, v)
				}
			}
		}
	}
	for _, st := range tx.HostStatuses(k) {
		if st.Host != host {
			continue
		}
		var d api.InstanceDetail
		if json.Unmarshal(st.Detail, &d) != nil {
			continue
		}
		for _, c := range d.VolumeCache {
			if c.DirtyBlocks > 0 || c.DirtyBytes > 0 {
				blocks += c.DirtyBlocks
				bytes += c.DirtyBytes
				vols = append(vols, c.Volume)
			}
		}
	}
	return blocks, bytes, vols
}

// OnRBD reports whether an instance's disks are all in Ceph (a root volume
// or a boot volume), so that another host can run it.
func OnRBD(s api.InstanceSpec) bool { return s.RootVolume != "" || s.BootVolume != "" }

// evacuate moves an instance off its fenced host (the recovery controller
// appended an Evacuation naming the fence) through the scheduler, with the
// same flavor, zone and group rules, avoiding the dead host. It refuses,
// with the reason as the instance's placement status, when the fence is
// not recorded in force, when the instance's disk is on the dead host, when
// its volumes had dirty cache blocks there (unless an admin accepted the
// loss), or when no host can take it.
func evacuate(a *Admission, r *api.Resource, s *api.InstanceSpec, p api.InstanceSpec, fl computespec.Flavor, img api.ImageSpec) error {
	if !a.System || len(s.Evacuations) != len(p.Evacuations)+1 {
		return api.Fieldf("spec.evacuations", "is set by the coordinator, one evacuation at a time")
	}
	ev := &s.Evacuations[len(s.Evacuations)-1]
	refuse := func(msg string) error {
		a.Tx.SetPlacement(r.Key(), api.PlacementStatus{State: api.PlacementRefused, Host: p.Host, Message: msg})
		return Conflictf("%s", msg)
	}
	if ev.From != p.Host {
		return api.Fieldf("spec.evacuations", "evacuation from %q, but the instance is on %q", ev.From, p.Host)
	}
	fencedAt, err := RecordedFence(a.Tx, ev.Fence, p.Host)
	if err != nil {
		return err
	}
	if !OnRBD(*s) {
		return refuse(fmt.Sprintf("not evacuated: its disk is local to the dead host %s; it waits for the host", p.Host))
	}
	if blocks, bytes, vols := DirtyCache(a.Tx, r.Key(), p.Host); blocks+bytes > 0 && !s.AcceptDataLoss {
		return refuse(fmt.Sprintf("not evacuated: volumes %v had %d dirty cache blocks (%d bytes) on the dead host %s that are not in Ceph; "+
			"an admin decides: stratactl instances evacuate %s --accept-data-loss", vols, blocks, bytes, p.Host, r.Name))
	}
	host, err := schedule(a, r, s, fl, img, "", p.Host, fmt.Sprintf("evacuated from %s after fence %s: ", p.Host, ev.Fence))
	if err != nil {
		return err
	}
	ev.FencedAt, ev.To = fencedAt, host
	// A migration to or from the dead host is over: the instance starts
	// afresh on its new host, from its volumes.
	s.Host, s.Migration = host, nil
	return rebindPorts(a, r, s, p.Host)
}
