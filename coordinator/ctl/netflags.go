package ctl

import (
	"fmt"
	"strings"

	"github.com/strata-infra/strata/pkg/api"
)

// This file turns stratactl's compact flag values for network resources
// ("START-END", "DEST=NEXTHOP", "key=value,key=value") into API spec
// structs. It checks only the shape; the coordinator validates the values
// and names the offending field.

// kv binds a key of a "key=value,..." list to the spec field it fills.
type kv struct {
	key string
	dst *string
}

// parseKV fills dst from s, comma-separated key=value pairs. Keys are the
// JSON names of the spec's fields ("-" may stand for "_"); an unknown or
// repeated key is an error naming it. Ports such as "8000:8080" contain no
// comma, so they need no quoting.
func parseKV(what, s string, keys []kv) error {
	if strings.TrimSpace(s) == "" {
		return fmt.Errorf("%s: empty; want key=value,... with keys %s", what, keyNames(keys))
	}
	seen := map[string]bool{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		k, v, ok := strings.Cut(item, "=")
		if !ok {
			return fmt.Errorf("%s %q: %q is not key=value", what, s, item)
		}
		k = strings.ReplaceAll(strings.ToLower(strings.TrimSpace(k)), "-", "_")
		var dst *string
		for _, b := range keys {
			if b.key == k {
				dst = b.dst
			}
		}
		if dst == nil {
			return fmt.Errorf("%s %q: unknown key %q; want one of %s", what, s, k, keyNames(keys))
		}
		if seen[k] {
			return fmt.Errorf("%s %q: key %q is given twice", what, s, k)
		}
		seen[k] = true
		*dst = strings.TrimSpace(v)
	}
	return nil
}

func keyNames(keys []kv) string {
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = k.key
	}
	return strings.Join(names, ", ")
}

// ParseSecurityGroupRule parses a security group rule such as
// "direction=ingress,protocol=tcp,ports=22,remote_cidr=0.0.0.0/0" (an
// IPv6 remote_cidr, or ethertype=IPv6, makes it an IPv6 rule).
func ParseSecurityGroupRule(s string) (api.SecurityGroupRuleSpec, error) {
	var r api.SecurityGroupRuleSpec
	err := parseKV("rule", s, []kv{
		{"direction", &r.Direction}, {"protocol", &r.Protocol}, {"ports", &r.Ports},
		{"remote_cidr", &r.RemoteCIDR}, {"remote_group", &r.RemoteGroup}, {"ethertype", &r.Ethertype},
	})
	return r, err
}

// ParseFirewallRule parses a firewall rule such as
// "protocol=tcp,destination_ports=22,action=allow".
func ParseFirewallRule(s string) (api.FirewallRuleSpec, error) {
	var r api.FirewallRuleSpec
	err := parseKV("rule", s, []kv{
		{"protocol", &r.Protocol}, {"source", &r.Source}, {"destination", &r.Destination},
		{"source_ports", &r.SourcePorts}, {"destination_ports", &r.DestinationPorts}, {"action", &r.Action},
	})
	return r, err
}

// ParsePool parses an allocation pool "START-END" (IPv4 or IPv6: neither
// has a '-' in it).
func ParsePool(s string) (api.IPRange, error) {
	start, end, ok := strings.Cut(s, "-")
	if !ok || strings.TrimSpace(start) == "" || strings.TrimSpace(end) == "" {
		return api.IPRange{}, fmt.Errorf("pool %q: want START-END", s)
	}
	return api.IPRange{Start: strings.TrimSpace(start), End: strings.TrimSpace(end)}, nil
}

// ParseRoute parses a static route "DEST=NEXTHOP", e.g. "10.9.0.0/16=10.1.0.254".
func ParseRoute(s string) (api.HostRoute, error) {
	dst, nh, ok := strings.Cut(s, "=")
	if !ok || strings.TrimSpace(dst) == "" || strings.TrimSpace(nh) == "" {
		return api.HostRoute{}, fmt.Errorf("route %q: want DESTINATION=NEXTHOP", s)
	}
	return api.HostRoute{Destination: strings.TrimSpace(dst), NextHop: strings.TrimSpace(nh)}, nil
}

// ParseFixedIP parses a port address: "IP" (in whichever subnet holds
// it), "SUBNET=IP", or "SUBNET=" (the next free address of SUBNET).
func ParseFixedIP(s string) (api.FixedIP, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return api.FixedIP{}, fmt.Errorf("ip: empty; want IP, SUBNET=IP or SUBNET=")
	}
	sub, ip, ok := strings.Cut(s, "=")
	if !ok {
		return api.FixedIP{IP: s}, nil
	}
	if strings.TrimSpace(sub) == "" {
		return api.FixedIP{}, fmt.Errorf("ip %q: want IP, SUBNET=IP or SUBNET=", s)
	}
	return api.FixedIP{Subnet: strings.TrimSpace(sub), IP: strings.TrimSpace(ip)}, nil
}

// ParseEach applies parse to every value, stopping at the first error.
func ParseEach[T any](vals []string, parse func(string) (T, error)) ([]T, error) {
	var out []T
	for _, v := range vals {
		t, err := parse(v)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}
