package planmap

import (
	"github.com/strata-infra/strata/agent/plan"
	"github.com/strata-infra/strata/pkg/contract"
	"github.com/strata-infra/strata/pkg/netspec"
)

// The mapping of routers, firewall groups and security groups lives in
// pkg/contract, which the coordinator runs at admission too: what it
// commits is what this host builds.

// Routers builds the routers placed on host.
func Routers(s *plan.Snapshot, host string) ([]netspec.Router, error) {
	return contract.NewIndex(s.Resources).Routers(host)
}

// SecurityGroups lists every group the plan's ports may refer to.
func SecurityGroups(s *plan.Snapshot) ([]netspec.SecurityGroup, error) {
	return contract.NewIndex(s.Resources).SecurityGroups()
}
