package api

import (
	"fmt"
	"hash/fnv"
)

// The coordinator makes some ports itself; both sides derive their names
// the same way, so an agent can find a router's or a network's port.

// DHCPPortName is the name of a network's DHCP port.
func DHCPPortName(network string) string {
	if len("dhcp-"+network) <= MaxNameLen {
		return "dhcp-" + network
	}
	return "dhcp-" + network[:MaxNameLen-14] + "-" + hash8(network)
}

// RouterPortName is the name of a router's interface port on a subnet.
func RouterPortName(router, subnet string) string {
	name := "rif-" + router + "-" + subnet
	if len(name) <= MaxNameLen {
		return name
	}
	return "rif-" + hash8(router+"/"+subnet) + "-" + subnet[:min(len(subnet), MaxNameLen-13)]
}

func hash8(s string) string {
	h := fnv.New32a()
	h.Write([]byte(s))
	return fmt.Sprintf("%08x", h.Sum32())
}
