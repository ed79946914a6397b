package contract

import (
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/netspec"
)

// names checks that every name a host derives for each resource (links,
// namespaces with the longest netns_prefix an agent takes, nft objects)
// fits the kernel's limit. The names come from the functions the agent's
// drivers build them with (netspec, ids.go), so a change there that would
// make a name too long for some resource is refused here, at admission,
// rather than by every host.
func (c *checker) names() {
	for _, r := range c.ix.all {
		var field string
		var names []netspec.Name
		id := netspec.ResourceID(r.Project, r.Name)
		switch r.Kind {
		case "network":
			field, names = "spec.segmentation_id", netspec.NetworkNames(Decode[api.NetworkSpec](r).SegmentationID)
		case "port":
			field, names = "name", netspec.PortNames(id)
		case "router":
			var ifs []string
			for _, in := range Decode[api.RouterSpec](r).Interfaces {
				ifs = append(ifs, netspec.ResourceID(r.Project, api.RouterPortName(r.Name, in.Subnet)))
			}
			field, names = "name", netspec.RouterNames(id, ifs)
		case "securitygroup":
			field, names = "name", netspec.GroupNames(netspec.GroupID(r.Project, r.Name))
		case "externalnetwork":
			field, names = "spec.physical_network", netspec.PhysnetNames(Decode[api.ExternalNetworkSpec](r).PhysicalNetwork)
		default:
			continue
		}
		if r.Project != "" && !netspec.ValidID(id) {
			c.add(r, "name", "host ID %q is not one hosts accept", id)
		}
		if err := netspec.CheckNames(names); err != nil {
			c.add(r, field, "hosts could not name it: %v", err)
		}
	}
}
