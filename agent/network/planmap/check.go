package planmap

import (
	"fmt"
	"net/netip"

	"github.com/strata-infra/strata/agent/plan"
	"github.com/strata-infra/strata/pkg/contract"
	"github.com/strata-infra/strata/pkg/netspec"
)

// Check maps a committed plan for host self through every check the
// network side runs before it touches the host: the mapping itself, the
// HostState validation the L2, DHCP and endpoint drivers run, and the
// router and security-group validation of their drivers, and the hosts
// the plan binds things to being ones this host knows (itself or a gossip
// member: remote), checked by the same function the coordinator admits
// with (contract.UnknownHosts). A nil error
// means this host accepts the plan; the coordinator's admission
// (pkg/contract) must never commit one that fails here.
func Check(s *plan.Snapshot, self Self, remote map[string]netip.Addr) error {
	known := func(h string) bool { _, ok := remote[h]; return ok || h == self.Host }
	if v := contract.UnknownHosts(s.Resources, known); len(v) > 0 {
		return fmt.Errorf("plan at epoch %d: %w", s.Epoch, v[0])
	}
	if v := contract.RouterLinkClashes(s.Resources, nil); len(v) > 0 {
		return fmt.Errorf("plan at epoch %d: %w", s.Epoch, v[0])
	}
	st, probs := HostState(plan.Decode(s), self, remote)
	if len(probs) > 0 {
		return fmt.Errorf("map plan at epoch %d: %w", s.Epoch, probs.Err())
	}
	if err := st.Validate(); err != nil {
		return fmt.Errorf("host state at epoch %d: %w", s.Epoch, err)
	}
	if err := netspec.ValidateRouters(st.Routers); err != nil {
		return fmt.Errorf("routers at epoch %d: %w", s.Epoch, err)
	}
	if err := netspec.ValidateSecurityGroups(st.SecurityGroups); err != nil {
		return fmt.Errorf("security groups at epoch %d: %w", s.Epoch, err)
	}
	return nil
}
