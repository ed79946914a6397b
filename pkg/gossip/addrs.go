package gossip

import (
	"fmt"
	"net/netip"
)

// SetAddrs fills the bind and advertise fields from "ip:port" strings, as
// operators write them in config files; advertise may be empty.
func (c *Config) SetAddrs(bind, advertise string) error {
	b, err := netip.ParseAddrPort(bind)
	if err != nil {
		return fmt.Errorf("gossip bind %q: want ip:port: %w", bind, err)
	}
	c.BindAddr, c.BindPort = b.Addr().String(), int(b.Port())
	if advertise == "" {
		return nil
	}
	a, err := netip.ParseAddrPort(advertise)
	if err != nil {
		return fmt.Errorf("gossip advertise %q: want ip:port: %w", advertise, err)
	}
	c.AdvertiseAddr, c.AdvertisePort = a.Addr().String(), int(a.Port())
	return nil
}
