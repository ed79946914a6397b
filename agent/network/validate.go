package network

import (
	"errors"
	"fmt"

	"github.com/strata-infra/strata/pkg/netspec"
)

// idRE is the one host-side ID check, shared with the coordinator.
var idRE = struct{ MatchString func(string) bool }{netspec.ValidID}

// Validate checks st before anything on the host is touched: bad input gets a
// clear error and changes nothing.
func (st HostState) Validate() error {
	var errs []error
	nets := make(map[string]bool, len(st.Networks))
	vnis := make(map[uint32]string, len(st.Networks))
	for _, n := range st.Networks {
		if err := n.validate(); err != nil {
			errs = append(errs, err)
		}
		if nets[n.ID] {
			errs = append(errs, fmt.Errorf("network %q: listed twice", n.ID))
		}
		if other, dup := vnis[n.VNI]; dup {
			errs = append(errs, fmt.Errorf("network %q: vni %d already used by %q", n.ID, n.VNI, other))
		}
		nets[n.ID], vnis[n.VNI] = true, n.ID
	}
	if len(st.Networks) > 0 && !st.LocalVTEP.IsValid() {
		errs = append(errs, errors.New("host state: local vtep is not set"))
	}
	errs = append(errs, st.validatePorts(nets)...)
	return errors.Join(errs...)
}

func (n Network) validate() error {
	switch {
	case !idRE.MatchString(n.ID):
		return fmt.Errorf("network %q: invalid id", n.ID)
	case n.VNI == 0 || n.VNI > MaxVNI:
		return fmt.Errorf("network %q: vni %d out of range 1..%d", n.ID, n.VNI, MaxVNI)
	case n.MTU != 0 && (n.MTU < 576 || n.MTU > 65000):
		return fmt.Errorf("network %q: mtu %d out of range", n.ID, n.MTU)
	case n.Type != "" && n.Type != TypeVXLAN && n.Type != TypeGRE:
		return fmt.Errorf("network %q: type %q is not vxlan or gre", n.ID, n.Type)
	}
	for _, s := range n.Subnets {
		if !s.CIDR.IsValid() || s.CIDR != s.CIDR.Masked() {
			return fmt.Errorf("network %q subnet %q: invalid cidr %s", n.ID, s.ID, s.CIDR)
		}
		if !idRE.MatchString(s.ID) {
			return fmt.Errorf("network %q subnet %q: invalid id", n.ID, s.ID)
		}
		for _, d := range s.DNSServers {
			if !d.IsValid() || d.Zone() != "" {
				return fmt.Errorf("network %q subnet %q: dns server %q is not an address without a zone", n.ID, s.ID, d)
			}
		}
	}
	return nil
}

func (st HostState) validatePorts(nets map[string]bool) []error {
	var errs []error
	ids := map[string]bool{}
	macs := map[string]string{} // network/mac -> port
	for _, p := range st.Ports {
		switch {
		case p.ID == "" || ids[p.ID]:
			errs = append(errs, fmt.Errorf("port %q: empty or duplicate id", p.ID))
		case !nets[p.NetworkID]:
			errs = append(errs, fmt.Errorf("port %q: unknown network %q", p.ID, p.NetworkID))
		case len(p.MAC) != 6 || p.MAC[0]&1 == 1:
			errs = append(errs, fmt.Errorf("port %q: invalid unicast mac %q", p.ID, p.MAC))
		case p.Host == "":
			errs = append(errs, fmt.Errorf("port %q: no binding host", p.ID))
		}
		key := p.NetworkID + "/" + p.MAC.String()
		if other, dup := macs[key]; dup {
			errs = append(errs, fmt.Errorf("port %q: mac %s already used by port %q", p.ID, p.MAC, other))
		}
		ids[p.ID], macs[key] = true, p.ID
	}
	for _, ep := range st.LocalEndpoints {
		if !ids[ep.PortID] {
			errs = append(errs, fmt.Errorf("endpoint %q: unknown port", ep.PortID))
		}
	}
	return errs
}
