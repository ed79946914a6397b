package registry

import (
	"net/netip"

	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/netspec"
)

// canonAddr parses the address in *v (netspec.ParseAddr: no zone) and
// stores it back in canonical form, so two spellings of one address are
// one address everywhere a spec is compared or rendered.
func canonAddr(field string, v *string) (netip.Addr, error) {
	a, err := netspec.ParseAddr(*v)
	if err != nil {
		return a, api.Fieldf(field, "%v", err)
	}
	*v = a.String()
	return a, nil
}

// canonPrefix is canonAddr for a CIDR.
func canonPrefix(field string, v *string) (netip.Prefix, error) {
	p, err := netspec.ParsePrefix(*v)
	if err != nil {
		return p, api.Fieldf(field, "%v", err)
	}
	*v = p.String()
	return p, nil
}
