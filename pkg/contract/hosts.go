package contract

import (
	"fmt"

	"github.com/strata-infra/strata/pkg/api"
)

// UnknownHosts reports every resource that binds or places something on a
// host known does not know: a port's spec.host, a network's
// spec.dhcp_host, a router's or an instance's spec.host. A host's agent
// never applies what is bound to a host that does not exist, and nothing
// would ever report it, so the coordinator refuses it at admission; an
// agent checks its plan against the hosts gossip shows it with the same
// function.
func UnknownHosts(rs []api.Resource, known func(string) bool) []Violation {
	var out []Violation
	for _, r := range rs {
		var field, host string
		switch r.Kind {
		case "port":
			field, host = "spec.host", Decode[api.PortSpec](r).Host
		case "network":
			field, host = "spec.dhcp_host", Decode[api.NetworkSpec](r).DHCPHost
		case "router":
			field, host = "spec.host", Decode[api.RouterSpec](r).Host
		case "instance":
			field, host = "spec.host", Decode[api.InstanceSpec](r).Host
		}
		if host != "" && !known(host) {
			out = append(out, Violation{Key: r.Key(), Field: field,
				Message: fmt.Sprintf("host %q is not known: no agent is registered, seen or reporting under that name", host)})
		}
	}
	return out
}
