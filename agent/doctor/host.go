package doctor

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"time"

	"github.com/strata-infra/strata/pkg/apiclient"
)

// Setup is what the agent's config says about this host beyond its
// drivers: where the coordinator is, the tunnel endpoint, the underlay
// device and the physical network devices. Empty fields are not checked.
type Setup struct {
	Coordinators []string          // API URLs, in the agent's failover order
	VTEP         string            // local tunnel endpoint address
	UnderlayDev  string            // device carrying the tunnels
	Physnets     map[string]string // physical network -> host device
}

// Probe is how the doctor looks at this host's network and coordinator.
type Probe struct {
	// Get fetches url and returns the HTTP status code.
	Get func(url string) (int, error)
	// Addrs lists the addresses configured on this host's interfaces.
	Addrs func() ([]netip.Addr, error)
	// Link reports whether a network device of that name exists.
	Link func(name string) bool
}

// HostProbe is the Probe of the machine the doctor runs on. It trusts the
// coordinator's CA the agent pins (caFile; the system's roots when ""), as
// the agent itself does, so a TLS coordinator with its own CA answers.
func HostProbe(caFile string) Probe {
	tc, tlsErr := apiclient.PinnedTLS(caFile)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	hc := &http.Client{Timeout: 3 * time.Second, Transport: tr}
	return Probe{
		Get: func(url string) (int, error) {
			if tlsErr != nil {
				return 0, tlsErr
			}
			resp, err := hc.Get(url)
			if err != nil {
				return 0, err
			}
			resp.Body.Close()
			return resp.StatusCode, nil
		},
		Addrs: func() ([]netip.Addr, error) {
			as, err := net.InterfaceAddrs()
			var out []netip.Addr
			for _, a := range as {
				if p, perr := netip.ParsePrefix(a.String()); perr == nil {
					out = append(out, p.Addr())
				}
			}
			return out, err
		},
		Link: func(name string) bool {
			_, err := net.InterfaceByName(name)
			return err == nil
		},
	}
}

// SetupChecks checks what the config names: the coordinator answers, the
// VTEP address is on this host, the underlay and physical network devices
// exist. The network ones run only when the host runs a network driver.
func SetupChecks(p Probe, s Setup, d Drivers) []Result {
	var rs []Result
	rs = append(rs, coordinatorChecks(p, s.Coordinators)...)
	if d.Network == "none" {
		return rs
	}
	if s.VTEP != "" {
		rs = append(rs, vtepCheck(p, s.VTEP))
	}
	if s.UnderlayDev != "" {
		rs = append(rs, linkCheck(p, "underlay", s.UnderlayDev, "network.underlay_dev"))
	}
	names := make([]string, 0, len(s.Physnets))
	for n := range s.Physnets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		rs = append(rs, linkCheck(p, "physnet:"+n, s.Physnets[n], "network.physical_networks"))
	}
	return rs
}

// coordinatorChecks probes every coordinator URL the agent may fail over
// to. One that does not answer is required only when none does: the agent
// runs on any one of them, but the operator should hear of the others.
func coordinatorChecks(p Probe, urls []string) []Result {
	rs := make([]Result, 0, len(urls))
	anyOK := false
	for _, u := range urls {
		r := Result{Check: "coordinator", Required: true, Status: OK}
		if len(urls) > 1 {
			r.Check = "coordinator:" + u
		}
		code, err := p.Get(u + "/v1/openapi.json")
		switch {
		case err != nil:
			r.Status, r.Detail = Missing, err.Error()
			r.Fix = "start strata-coordinator, or fix coordinator: in the agent config"
		case code >= 500:
			r.Status, r.Detail = Missing, fmt.Sprintf("%s answers HTTP %d", u, code)
			r.Fix = "see the coordinator's log"
		default:
			r.Detail = fmt.Sprintf("%s answers (HTTP %d)", u, code)
			anyOK = true
		}
		rs = append(rs, r)
	}
	for i := range rs {
		if rs[i].Status != OK && anyOK {
			rs[i].Status, rs[i].Required = Warn, false
			rs[i].Detail += " (the agent fails over to another coordinator)"
		}
	}
	return rs
}

func vtepCheck(p Probe, vtep string) Result {
	r := Result{Check: "vtep", Required: true, Status: Missing}
	want, err := netip.ParseAddr(vtep)
	if err != nil {
		r.Detail, r.Fix = fmt.Sprintf("%q is not an IP address", vtep), "set vtep: to an address of this host"
		return r
	}
	addrs, err := p.Addrs()
	for _, a := range addrs {
		if a.Unmap() == want.Unmap() {
			r.Status, r.Detail = OK, vtep+" is on this host"
			return r
		}
	}
	r.Detail = vtep + " is on none of this host's interfaces"
	if err != nil {
		r.Detail += fmt.Sprintf(" (%v)", err)
	}
	r.Fix = "set vtep: to an address of this host, or configure " + vtep + " on the underlay device"
	return r
}

func linkCheck(p Probe, check, dev, key string) Result {
	r := Result{Check: check, Required: true, Status: OK, Detail: "device " + dev + " exists"}
	if !p.Link(dev) {
		r.Status, r.Detail, r.Fix = Missing, "no device "+dev, "create "+dev+", or fix "+key+" in the agent config"
	}
	return r
}
