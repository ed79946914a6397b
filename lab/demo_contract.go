package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/strata-infra/strata/pkg/api"
)

// The contract step of the demo (issue 10): what some host could not
// apply is refused at the API's door with a 4xx naming the field, and
// nothing changes anywhere. The demo's 60-character security group (the
// name that once froze every host) is accepted and applied.

// DemoContractProject is the project DemoContract writes into; it must
// exist and have a network named "app" (testdata/lab/demo.yaml).
const DemoContractProject = "demo-a"

// DemoContract tries three writes hosts could not apply and shows each
// refusal; it fails when one is accepted, when a refusal does not name the
// field at fault, or when the cluster epoch moved.
func (l *Lab) DemoContract(ctx context.Context, w io.Writer) error {
	c, err := l.Client()
	if err != nil {
		return err
	}
	epoch := func() (uint64, error) {
		var st struct {
			Epoch uint64 `json:"epoch"`
		}
		err := c.Do(ctx, http.MethodGet, "/v1/status", nil, &st)
		return st.Epoch, err
	}
	before, err := epoch()
	if err != nil {
		return err
	}
	p := "/v1/projects/" + DemoContractProject
	long := strings.Repeat("s", 64)
	for _, t := range []struct{ what, path, name, spec, field string }{
		{"a security group with a 64-character name", p + "/securitygroups/" + long, long, `{}`, "name"},
		{"a port bound to a host no agent is registered under", p + "/ports/stray", "stray", `{"network":"app","host":"no-such-host"}`, "spec.host"},
		{"a network whose DHCP would run on that host", p + "/networks/stray", "stray", `{"dhcp_host":"no-such-host"}`, "spec.dhcp_host"},
	} {
		err := c.Do(ctx, http.MethodPut, t.path, api.ResourceRequest{Name: t.name, Spec: json.RawMessage(t.spec)}, nil)
		var ae *api.Error
		switch {
		case err == nil:
			return fmt.Errorf("%s was accepted", t.what)
		case !errors.As(err, &ae):
			return err
		case ae.Code < 400 || ae.Code >= 500 || ae.Field != t.field:
			return fmt.Errorf("%s: %v, want a 4xx naming %s", t.what, err, t.field)
		}
		fmt.Fprintf(w, "  %s: refused, %v\n", t.what, ae)
	}
	after, err := epoch()
	if err != nil {
		return err
	}
	if after != before {
		return fmt.Errorf("refused writes moved the cluster epoch %d -> %d", before, after)
	}
	fmt.Fprintf(w, "  cluster epoch still %d: nothing changed on the coordinator or any host\n", after)
	return nil
}
