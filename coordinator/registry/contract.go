package registry

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/contract"
)

// contractKinds are the kinds pkg/contract reads; a write of any other kind
// cannot change what hosts are asked to apply on the network side. An
// instance is one: its admission makes and binds ports.
var contractKinds = []string{"network", "subnet", "port", "router", "floatingip", "firewallgroup", "securitygroup", "instance"}

// InContract reports whether a write of kind can break the contract.
func InContract(kind string) bool {
	if kind == "externalnetwork" {
		return true
	}
	for _, k := range contractKinds {
		if k == kind {
			return true
		}
	}
	return false
}

// ContractScope lists what the contract is checked over for a write in
// project: its network resources and the external networks; project ""
// (a global kind) checks every project.
func ContractScope(tx *store.Tx, project string) ([]api.Resource, error) {
	out, err := tx.List("externalnetwork", "", false)
	if err != nil {
		return nil, err
	}
	for _, k := range contractKinds {
		rs, err := tx.List(k, project, project == "")
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
	}
	return out, nil
}

// CheckContract checks the state in tx after a write of k: violations the
// write introduced (not in before) refuse it with a 409 naming the
// resource and field (Field is set when the fault is in k itself), and
// the transaction is rolled back.
func CheckContract(tx *store.Tx, k api.Key, before []contract.Violation, facts *contract.Facts) error {
	rs, err := ContractScope(tx, k.Project)
	if err != nil {
		return err
	}
	had := map[string]bool{}
	for _, v := range before {
		had[v.Error()] = true
	}
	var fresh []contract.Violation
	for _, v := range contract.Check(rs, facts) {
		if !had[v.Error()] {
			fresh = append(fresh, v)
		}
	}
	if len(fresh) == 0 {
		return nil
	}
	msgs := make([]string, len(fresh))
	for i, v := range fresh {
		msgs[i] = v.Error()
	}
	field := ""
	for _, v := range fresh {
		if v.Key == k && v.Field != "" {
			field = v.Field
			break
		}
	}
	return &api.Error{Code: http.StatusConflict, Field: field,
		Message: fmt.Sprintf("hosts could not apply the result: %s", strings.Join(msgs, "; "))}
}

// ContractViolations is the contract's verdict on the state in tx before a
// write in project.
func ContractViolations(tx *store.Tx, project string, facts *contract.Facts) ([]contract.Violation, error) {
	rs, err := ContractScope(tx, project)
	if err != nil {
		return nil, err
	}
	return contract.Check(rs, facts), nil
}
