package api

// ExternalNetworkSpec is the spec of kind "externalnetwork": a flat
// provider network (admin), bridged on every host to the interface the
// agent's config maps its physical network to, with one IPv4 subnet that
// router gateways and floating IPs are allocated from.
type ExternalNetworkSpec struct {
	PhysicalNetwork string `json:"physical_network"`
	CIDR            string `json:"cidr"`
	// Gateway is the upstream router routers send their default route to;
	// "" for none.
	Gateway         string    `json:"gateway,omitempty"`
	AllocationPools []IPRange `json:"allocation_pools,omitempty"`
}

// RouterInterface attaches a router to a project subnet; the router takes
// the subnet's gateway address.
type RouterInterface struct {
	Subnet string `json:"subnet"`
}

// RouterSpec is the spec of kind "router".
type RouterSpec struct {
	ExternalNetwork string `json:"external_network,omitempty"`
	// ExternalIP is allocated from the external network unless given.
	ExternalIP string            `json:"external_ip,omitempty"`
	SNAT       *bool             `json:"snat,omitempty"` // default true
	Interfaces []RouterInterface `json:"interfaces,omitempty"`
	Routes     []HostRoute       `json:"routes,omitempty"`
	// Host runs the router's namespace: given by an admin, or placed.
	Host string `json:"host,omitempty"`
}

// SNATEnabled reports the SNAT setting with its default.
func (s RouterSpec) SNATEnabled() bool { return s.SNAT == nil || *s.SNAT }

// FloatingIPSpec is the spec of kind "floatingip": an external address,
// optionally associated with a port behind a router on that network.
type FloatingIPSpec struct {
	ExternalNetwork string `json:"external_network"`
	IP              string `json:"ip,omitempty"`
	Port            string `json:"port,omitempty"`
	// Router is filled in by the coordinator on association: the router
	// that has the port's subnet and a gateway on the external network.
	Router string `json:"router,omitempty"`
}

// FirewallRuleSpec is one rule of a firewall policy; the first that
// matches a packet decides.
type FirewallRuleSpec struct {
	Protocol    string `json:"protocol,omitempty"` // tcp, udp, icmp; "" any
	Source      string `json:"source,omitempty"`
	Destination string `json:"destination,omitempty"`
	// SourcePorts and DestinationPorts are "80" or "8000:8080".
	SourcePorts      string `json:"source_ports,omitempty"`
	DestinationPorts string `json:"destination_ports,omitempty"`
	Action           string `json:"action"` // allow, deny, reject
}

// FirewallPolicySpec is an ordered list of rules with an implicit deny.
type FirewallPolicySpec struct {
	Rules []FirewallRuleSpec `json:"rules"`
	// ApplyToExisting makes a change also cut established connections.
	ApplyToExisting bool `json:"apply_to_existing,omitempty"`
}

// FirewallGroupSpec is the spec of kind "firewallgroup" (FWaaS v2 shape):
// ingress and egress policies on some interfaces of one router. Ingress is
// what the router forwards into the subnet behind an interface, egress what
// it receives from there.
type FirewallGroupSpec struct {
	Router string `json:"router"`
	// Interfaces names the subnets of the router's interfaces it covers;
	// empty means all of them.
	Interfaces []string            `json:"interfaces,omitempty"`
	Ingress    *FirewallPolicySpec `json:"ingress,omitempty"`
	Egress     *FirewallPolicySpec `json:"egress,omitempty"`
}

// SecurityGroupRuleSpec allows one kind of traffic to or from a port.
type SecurityGroupRuleSpec struct {
	Direction string `json:"direction"` // ingress or egress
	Protocol  string `json:"protocol,omitempty"`
	// Ports is "22" or "8000:8080"; only with tcp or udp.
	Ports       string `json:"ports,omitempty"`
	RemoteCIDR  string `json:"remote_cidr,omitempty"` // IPv4 or IPv6
	RemoteGroup string `json:"remote_group,omitempty"`
	// Ethertype is "IPv4" or "IPv6": the rule applies to that family
	// only. Empty: the family of RemoteCIDR, or both without one.
	Ethertype string `json:"ethertype,omitempty"`
}

// SecurityGroupSpec is the spec of kind "securitygroup". A port with no
// security_groups is in its project's "default" group: the stored one of
// that name, or, when none is stored, all egress plus ingress from the
// group's own members.
type SecurityGroupSpec struct {
	Rules []SecurityGroupRuleSpec `json:"rules"`
}

// Port owners made by routers.
const PortOwnerRouterInterface = "network:router_interface"
