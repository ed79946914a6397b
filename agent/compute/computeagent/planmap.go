package computeagent

import (
	"encoding/json"
	"fmt"
	"net"

	"github.com/strata-infra/strata/agent/compute"
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

// desired maps the plan's instances bound to host, with their flavors,
// images and ports, onto the driver's instances. It is pure.
func desired(s *plan.Snapshot, host string, boot *compute.DirectBoot) ([]wanted, error) {
	flavors := map[string]computespec.Flavor{}
	for _, r := range s.Kind("flavor") {
		var fs api.FlavorSpec
		if err := json.Unmarshal(r.Spec, &fs); err != nil {
			return nil, fmt.Errorf("flavor %s: %w", r.Name, err)
		}
		flavors[r.Name] = computespec.Flavor{Name: r.Name, VCPUs: fs.VCPUs, RAMMiB: fs.RAMMiB, DiskGiB: fs.DiskGiB, ExtraSpecs: fs.ExtraSpecs}
	}
	images := map[string]computespec.Image{}
	for _, r := range s.Kind("image") {
		var is api.ImageSpec
		if err := json.Unmarshal(r.Spec, &is); err != nil {
			return nil, fmt.Errorf("image %s: %w", r.Name, err)
		}
		images[r.Name] = computespec.Image{ID: r.Name, Format: computespec.ImageFormat(is.Format), Path: is.Path}
	}
	vnis := map[api.Key]uint32{}
	for _, r := range s.Kind("network") {
		var ns api.NetworkSpec
		if err := json.Unmarshal(r.Spec, &ns); err != nil {
			return nil, fmt.Errorf("network %s: %w", r.Key(), err)
		}
		vnis[r.Key()] = ns.SegmentationID
	}
	ports := map[api.Key]api.PortSpec{}
	for _, r := range s.Kind("port") {
		var ps api.PortSpec
		if err := json.Unmarshal(r.Spec, &ps); err != nil {
			return nil, fmt.Errorf("port %s: %w", r.Key(), err)
		}
		ports[r.Key()] = ps
	}
	var out []wanted
	for _, r := range s.Kind("instance") {
		var is api.InstanceSpec
		if err := json.Unmarshal(r.Spec, &is); err != nil {
			return nil, fmt.Errorf("instance %s: %w", r.Key(), err)
		}
		if is.Host != host {
			continue
		}
		w := wanted{Key: r.Key(), Epoch: r.Epoch, In: compute.Instance{
			Spec: computespec.Instance{ID: api.InstanceID(r.Project, r.Name), Name: r.Name, Flavor: is.Flavor, Image: is.Image,
				UserData: []byte(is.UserData), SSHKey: is.SSHKey, Power: computespec.PowerState(is.Power), Reboots: is.Reboots},
			Flavor: flavors[is.Flavor], Image: images[is.Image], Boot: boot,
		}}
		if w.In.Spec.Power == "" {
			w.In.Spec.Power = computespec.PowerRunning
		}
		var errs []string
		if _, ok := flavors[is.Flavor]; !ok {
			errs = append(errs, fmt.Sprintf("flavor %q is not in the plan", is.Flavor))
		}
		if _, ok := images[is.Image]; !ok {
			errs = append(errs, fmt.Sprintf("image %q is not in the plan", is.Image))
		}
		// The guest's NICs: one per network first, then its own ports.
		for _, name := range append(append([]string{}, is.NetworkPorts...), is.Ports...) {
			p, addr, err := nic(r.Project, name, ports, vnis)
			if err != nil {
				errs = append(errs, err.Error())
				continue
			}
			w.In.Spec.Ports = append(w.In.Spec.Ports, p)
			w.Addrs = append(w.Addrs, addr)
		}
		if len(errs) > 0 {
			w.Err = fmt.Sprint(errs)
			w.In.Flavor = computespec.Flavor{} // invalid: the driver keeps, but does not touch, its domain
		}
		out = append(out, w)
	}
	return out, nil
}

func nic(project, name string, ports map[api.Key]api.PortSpec, vnis map[api.Key]uint32) (computespec.Port, api.InstanceAddress, error) {
	ps, ok := ports[api.Key{Kind: "port", Project: project, Name: name}]
	if !ok {
		return computespec.Port{}, api.InstanceAddress{}, fmt.Errorf("port %q is not in the plan", name)
	}
	vni, ok := vnis[api.Key{Kind: "network", Project: project, Name: ps.Network}]
	if !ok {
		return computespec.Port{}, api.InstanceAddress{}, fmt.Errorf("network %q of port %q is not in the plan", ps.Network, name)
	}
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
	return computespec.Port{ID: planmap.PortID(project, name), NetworkID: planmap.NetworkID(vni), VNI: vni, MAC: mac}, addr, nil
}
