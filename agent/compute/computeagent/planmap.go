package computeagent

import (
	"fmt"
	"net"

	"github.com/strata-infra/strata/agent/compute"
	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/planmap"
	"github.com/strata-infra/strata/agent/plan"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/computespec"
)

// wanted is one instance of this host's plan, mapped for the driver.
type wanted struct {
	Key   api.Key
	Epoch uint64 // the epoch that last changed the instance resource
	In    compute.Instance
	Addrs []api.InstanceAddress
	// Err says why the instance could not be mapped (a flavor, image or
	// port missing from the plan). Such an instance still goes to the
	// driver, made invalid, so that an existing domain is neither deleted
	// nor redefined without a NIC.
	Err string
}

// L2 is the network side, asked where each NIC plugs in.
type L2 interface {
	// L2Binding is where port portID of network networkID (both as named
	// on hosts) plugs in, or why it must not be plugged yet.
	L2Binding(networkID, portID string) (network.L2Binding, error)
}

// desired maps the plan's instances bound to host, with their flavors,
// images and ports, onto the driver's instances; l2 says where each NIC
// plugs in. It reads no host state of its own.
func desired(h *plan.Host, host string, boot *compute.DirectBoot, l2 L2) []wanted {
	flavors := map[string]computespec.Flavor{}
	for _, r := range h.Flavors.Items {
		fs := r.Spec
		flavors[r.Name] = computespec.Flavor{Name: r.Name, VCPUs: fs.VCPUs, RAMMiB: fs.RAMMiB, DiskGiB: fs.DiskGiB, ExtraSpecs: fs.ExtraSpecs}
	}
	images := map[string]computespec.Image{}
	for _, r := range h.Images.Items {
		images[r.Name] = computespec.Image{ID: r.Name, Format: computespec.ImageFormat(r.Spec.Format), Path: r.Spec.Path}
	}
	vols := indexVolumes(h)
	var out []wanted
	for _, r := range h.Instances.Items {
		is := r.Spec
		mg := is.Migration
		if is.Host != host && (mg == nil || mg.Source != host) {
			continue
		}
		w := wanted{Key: r.Key(), Epoch: r.Epoch, In: compute.Instance{
			Spec: computespec.Instance{ID: api.InstanceID(r.Project, r.Name), Name: r.Name, Flavor: is.Flavor, Image: is.Image,
				UserData: []byte(is.UserData), SSHKey: is.SSHKey, Power: computespec.PowerState(is.Power), Reboots: is.Reboots},
			Flavor: flavors[is.Flavor], Image: images[is.Image], Boot: boot,
		}}
		if mg != nil && is.Host != host {
			// Leaving: the driver moves (or keeps, for the peer to copy)
			// the domain it has; it defines nothing, so no NIC is needed.
			w.In.Migration = &compute.Migration{Peer: is.Host, Out: true, Live: mg.Live}
			out = append(out, w)
			continue
		}
		if mg != nil {
			w.In.Migration = &compute.Migration{Peer: mg.Source, Live: mg.Live}
		}
		if w.In.Spec.Power == "" {
			w.In.Spec.Power = computespec.PowerRunning
		}
		var errs []string
		if _, ok := flavors[is.Flavor]; !ok {
			errs = append(errs, fmt.Sprintf("flavor %q is not in the plan", is.Flavor))
		}
		root := is.BootVolume
		if root == "" {
			root = is.RootVolume
		}
		if root != "" {
			v, err := vols.volume(r.Project, root, true)
			if err != nil {
				errs = append(errs, err.Error())
			}
			w.In.Spec.Root = &v
		} else if _, ok := images[is.Image]; !ok {
			errs = append(errs, fmt.Sprintf("image %q is not in the plan", is.Image))
		}
		for _, name := range is.Volumes {
			v, err := vols.volume(r.Project, name, false)
			if err != nil {
				errs = append(errs, err.Error())
				continue
			}
			w.In.Spec.Volumes = append(w.In.Spec.Volumes, v)
		}
		// The guest's NICs: one per network first, then its own ports.
		for _, name := range append(append([]string{}, is.NetworkPorts...), is.Ports...) {
			p, addr, err := nic(h, r.Project, name, l2)
			if err != nil {
				errs = append(errs, err.Error())
				continue
			}
			w.In.Spec.Ports = append(w.In.Spec.Ports, p)
			w.Addrs = append(w.Addrs, addr)
		}
		if err := h.Invalid[r.Key()]; err != nil {
			errs = append(errs, err.Error())
		}
		if len(errs) > 0 {
			w.Err = fmt.Sprint(errs)
			w.In.Flavor = computespec.Flavor{} // invalid: the driver keeps, but does not touch, its domain
		}
		out = append(out, w)
	}
	return out
}

func nic(h *plan.Host, project, name string, l2 L2) (computespec.Port, api.InstanceAddress, error) {
	pr, ok := h.Ports.Get(project, name)
	if !ok {
		return computespec.Port{}, api.InstanceAddress{}, fmt.Errorf("port %q is not in the plan", name)
	}
	ps := pr.Spec
	n, ok := h.Networks.Get(project, ps.Network)
	if !ok {
		return computespec.Port{}, api.InstanceAddress{}, fmt.Errorf("network %q of port %q is not in the plan", ps.Network, name)
	}
	vni := n.Spec.SegmentationID
	mac, err := net.ParseMAC(ps.MAC)
	if err != nil {
		return computespec.Port{}, api.InstanceAddress{}, fmt.Errorf("port %q: mac %q: %w", name, ps.MAC, err)
	}
	addr := api.InstanceAddress{Port: name, Network: ps.Network, MAC: mac.String()}
	for _, ip := range ps.FixedIPs {
		addr.IPs = append(addr.IPs, ip.IP)
	}
	// The port ID is the network subsystem's, so the tap's name matches
	// the port the bridge and DHCP know.
	p := computespec.Port{ID: planmap.PortID(project, name), NetworkID: planmap.NetworkID(vni), VNI: vni, MAC: mac}
	if l2 == nil {
		return p, addr, fmt.Errorf("port %q: no network subsystem on this host to plug it into", name)
	}
	b, err := l2.L2Binding(p.NetworkID, p.ID)
	if err != nil {
		return p, addr, fmt.Errorf("port %q: %w", name, err)
	}
	p.Bridge, p.Switch, p.FullChecksums = b.Bridge, string(b.Type), b.FullChecksums
	return p, addr, nil
}
