package api

// NetworkSpec is the spec of kind "network": a tenant L2 network.
type NetworkSpec struct {
	// Type is the overlay: "vxlan" (default) or "gre" (carried by hosts
	// on the ovs driver; the segmentation ID is the GRE key). It cannot
	// change.
	Type string `json:"type,omitempty"`
	// SegmentationID is the VNI: allocated from the coordinator's range, or
	// given by an admin. It cannot change.
	SegmentationID uint32 `json:"segmentation_id,omitempty"`
	// MTU defaults to the underlay MTU less 50 (VXLAN over IPv4).
	MTU int `json:"mtu,omitempty"`
	// DHCPHost is the host running the network's dnsmasq; chosen among the
	// alive agents when the first DHCP subnet is added, unless given.
	DHCPHost string `json:"dhcp_host,omitempty"`
}

// IPRange is an inclusive range of addresses.
type IPRange struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

// HostRoute is a static route handed to instances by DHCP.
type HostRoute struct {
	Destination string `json:"destination"`
	NextHop     string `json:"nexthop"`
}

// SubnetSpec is the spec of kind "subnet": an IPv4 or IPv6 range of a network.
type SubnetSpec struct {
	Network string `json:"network"`
	CIDR    string `json:"cidr"`
	// Gateway defaults to the first address; "none" means no gateway.
	Gateway         string      `json:"gateway,omitempty"`
	AllocationPools []IPRange   `json:"allocation_pools,omitempty" maxitems:"16"`
	DNSServers      []string    `json:"dns_servers,omitempty" maxitems:"8"`
	HostRoutes      []HostRoute `json:"host_routes,omitempty" maxitems:"64"`
	// DHCP defaults to true.
	DHCP *bool `json:"dhcp,omitempty"`
}

// DHCPEnabled reports the subnet's DHCP setting with its default.
func (s SubnetSpec) DHCPEnabled() bool { return s.DHCP == nil || *s.DHCP }

// FixedIP is one address of a port, in a subnet of its network.
type FixedIP struct {
	Subnet string `json:"subnet,omitempty"`
	IP     string `json:"ip,omitempty"`
}

// Port owners.
const (
	// PortOwnerNone is an instance (or unbound) port.
	PortOwnerNone = ""
	// PortOwnerEndpoint asks the host to plug the port into a namespace of
	// its own (a test endpoint standing in for an instance).
	PortOwnerEndpoint = "endpoint"
	// PortOwnerDHCP is a network's DHCP port, made by the coordinator.
	PortOwnerDHCP = "network:dhcp"
	// PortOwnerCompute is an instance's NIC.
	PortOwnerCompute = "compute"
)

// PortSpec is the spec of kind "port": a NIC on a network. MAC and fixed
// IPs are allocated by the coordinator's IPAM when not given.
type PortSpec struct {
	Network  string    `json:"network"`
	MAC      string    `json:"mac,omitempty"`
	FixedIPs []FixedIP `json:"fixed_ips,omitempty" maxitems:"16"`
	// Host binds the port to a host (gossip name).
	Host    string `json:"host,omitempty"`
	Owner   string `json:"owner,omitempty"`
	DNSName string `json:"dns_name,omitempty"`
	// SecurityGroups filter the port's traffic (instance and endpoint
	// ports); none means the project's default group.
	SecurityGroups []string `json:"security_groups,omitempty" maxitems:"16"`
	// PortSecurity false turns security groups off for the port.
	PortSecurity *bool `json:"port_security,omitempty"`
	// AllowedAddressPairs are the other sources (an address or a CIDR,
	// with a MAC or the port's) the port may send from; everything else
	// it sends with another source IP or MAC is dropped.
	AllowedAddressPairs []AddressPair `json:"allowed_address_pairs,omitempty" maxitems:"16"`
}

// AddressPair is one allowed address pair of a port.
type AddressPair struct {
	IPAddress  string `json:"ip_address"`
	MACAddress string `json:"mac_address,omitempty"`
}

// PortSecurityEnabled reports the port_security setting with its default.
func (s PortSpec) PortSecurityEnabled() bool { return s.PortSecurity == nil || *s.PortSecurity }
