package contract

import (
	"fmt"

	"github.com/strata-infra/strata/pkg/api"
)

// instances checks what an instance's host needs of the network side: each
// of its NICs (the ports made for its networks, then its own ports) is a
// port of its project, bound to the instance's host and owned by compute,
// so the host finds it in its plan and can plug it in. While a live
// migration lasts, the guest runs on the source: its ports are bound there.
func (c *checker) instances() {
	for _, r := range c.ix.Kind("instance") {
		is := Decode[api.InstanceSpec](r)
		bound := is.Host
		if m := is.Migration; m != nil && m.Live {
			bound = m.Source
		}
		nics := map[string]string{}
		for i, p := range is.NetworkPorts {
			nics[p] = fmt.Sprintf("spec.network_ports[%d]", i)
		}
		for i, p := range is.Ports {
			nics[p] = fmt.Sprintf("spec.ports[%d]", i)
		}
		for _, name := range append(append([]string{}, is.NetworkPorts...), is.Ports...) {
			ps, ok := c.ix.ports[key{r.Project, name}]
			switch {
			case !ok:
				c.add(r, nics[name], "port %q does not exist", name)
			case bound != "" && (ps.Host != bound || ps.Owner != api.PortOwnerCompute):
				c.add(r, nics[name], "port %q is bound to host %q (owner %q), not to the instance's host %q", name, ps.Host, ps.Owner, bound)
			}
		}
	}
}
