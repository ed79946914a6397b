package registry

import (
	"errors"
	"net/http"

	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
)

// NetworkKind is a tenant L2 network carried over VXLAN.
func NetworkKind() *Kind {
	return &Kind{
		Name: "network", Plural: "networks", Scope: Project, Order: 10,
		NewSpec:      func() any { return &api.NetworkSpec{} },
		Admit:        admitNetwork,
		Assigned:     []string{"segmentation_id", "dhcp_host"},
		BeforeDelete: deleteNetwork,
		Schema: map[string]any{
			"type": "object", "additionalProperties": false,
			"properties": map[string]any{
				"type":            map[string]any{"type": "string", "enum": []string{"vxlan"}},
				"segmentation_id": map[string]any{"type": "integer", "minimum": 1, "maximum": 16777215},
				"mtu":             map[string]any{"type": "integer", "minimum": 576},
				"dhcp_host":       map[string]any{"type": "string"},
			},
		},
	}
}

// MaxVNI is VXLAN's 24-bit limit.
const MaxVNI = 1<<24 - 1

func admitNetwork(a *Admission, r *api.Resource, spec any) error {
	s := spec.(*api.NetworkSpec)
	var prev api.NetworkSpec
	if a.Prev != nil {
		prev = decode[api.NetworkSpec](*a.Prev)
	}
	switch {
	case s.Type == "" && a.Prev != nil && prev.Type != "":
		s.Type = prev.Type
	case s.Type == "":
		s.Type = "vxlan"
	}
	if s.Type != "vxlan" && s.Type != "gre" {
		return api.Fieldf("spec.type", "%q is not supported; use vxlan or gre (gre needs hosts on the ovs driver)", s.Type)
	}
	if a.Prev != nil && prev.Type != "" && s.Type != prev.Type {
		return api.Fieldf("spec.type", "cannot change from %s to %s; make a new network", prev.Type, s.Type)
	}
	if s.DHCPHost == "" && a.Prev != nil {
		s.DHCPHost = prev.DHCPHost
	}
	if a.System && a.Evacuate != "" && s.DHCPHost == a.Evacuate {
		// Its DHCP host is fenced: another alive host serves it, with
		// the same port, MAC and addresses.
		host, err := pickDHCPHost(a, r.Project, r.Name, *s)
		if err != nil {
			return err
		}
		s.DHCPHost = host
	}
	if s.DHCPHost != prev.DHCPHost && !a.Admin {
		// Which host serves a network's DHCP is the coordinator's choice
		// (or an admin's), never a tenant's.
		return &api.Error{Code: http.StatusForbidden, Field: "spec.dhcp_host", Message: "only an admin may choose the DHCP host"}
	}
	if s.DHCPHost != "" {
		if fe := api.ValidateName("spec.dhcp_host", s.DHCPHost); fe != nil {
			return fe
		}
	}
	maxMTU := a.Settings.UnderlayMTU - 50
	switch {
	case s.MTU == 0:
		s.MTU = maxMTU
	case s.MTU < 576 || s.MTU > maxMTU:
		return api.Fieldf("spec.mtu", "%d is outside 576..%d (the underlay MTU %d less 50 for VXLAN)", s.MTU, maxMTU, a.Settings.UnderlayMTU)
	}
	if err := admitVNI(a, r, s, prev); err != nil {
		return err
	}
	if a.Prev != nil && s.DHCPHost != prev.DHCPHost && s.DHCPHost != "" {
		return moveDHCPPort(a, r.Project, r.Name, s.DHCPHost)
	}
	return nil
}

func admitVNI(a *Admission, r *api.Resource, s *api.NetworkSpec, prev api.NetworkSpec) error {
	if a.Prev != nil {
		if s.SegmentationID != 0 && s.SegmentationID != prev.SegmentationID {
			return api.Fieldf("spec.segmentation_id", "cannot change from %d to %d; make a new network", prev.SegmentationID, s.SegmentationID)
		}
		s.SegmentationID = prev.SegmentationID
		return nil
	}
	all, err := a.Tx.List("network", "", true)
	if err != nil {
		return err
	}
	used := map[uint32]string{}
	for _, n := range all {
		used[decode[api.NetworkSpec](n).SegmentationID] = n.Key().String()
	}
	if s.SegmentationID != 0 {
		if !a.Admin {
			return &api.Error{Code: http.StatusForbidden, Field: "spec.segmentation_id", Message: "only an admin may choose a segmentation id"}
		}
		if s.SegmentationID > MaxVNI {
			return api.Fieldf("spec.segmentation_id", "%d is above the VXLAN maximum %d", s.SegmentationID, MaxVNI)
		}
		if other, dup := used[s.SegmentationID]; dup {
			return Conflictf("segmentation id %d is already used by %s", s.SegmentationID, other)
		}
		return nil
	}
	for v := a.Settings.VNIMin; v <= a.Settings.VNIMax && v != 0; v++ {
		if _, taken := used[v]; !taken {
			s.SegmentationID = v
			return nil
		}
	}
	return Conflictf("no free segmentation id left in %d..%d", a.Settings.VNIMin, a.Settings.VNIMax)
}

func deleteNetwork(a *Admission, r api.Resource) error {
	subnets, err := subnetsOf(a, r.Project, r.Name)
	if err != nil {
		return err
	}
	if len(subnets) > 0 {
		return Conflictf("network %q still has %d subnets (first: %q); delete them first", r.Name, len(subnets), subnets[0].Name)
	}
	ports, err := portsOf(a, r.Project, r.Name)
	if err != nil {
		return err
	}
	if len(ports) > 0 {
		return Conflictf("network %q still has %d ports (first: %q); delete them first", r.Name, len(ports), ports[0].Name)
	}
	return nil
}

// getNetwork reads a network of the project, as a field error when absent.
func getNetwork(tx *store.Tx, project, name, field string) (api.Resource, api.NetworkSpec, error) {
	if name == "" {
		return api.Resource{}, api.NetworkSpec{}, api.Fieldf(field, "must name a network")
	}
	n, err := tx.Get(api.Key{Kind: "network", Project: project, Name: name})
	if errors.Is(err, store.ErrNotFound) {
		return api.Resource{}, api.NetworkSpec{}, api.Fieldf(field, "network %q does not exist in project %q", name, project)
	}
	if err != nil {
		return api.Resource{}, api.NetworkSpec{}, err
	}
	return n, decode[api.NetworkSpec](n), nil
}
