package doctor

import (
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeProbe is a host with the given addresses and devices whose
// coordinator answers with code (0: unreachable).
func fakeProbe(code int, addrs []string, links ...string) Probe {
	return Probe{
		Get: func(string) (int, error) {
			if code == 0 {
				return 0, errors.New("connection refused")
			}
			return code, nil
		},
		Addrs: func() ([]netip.Addr, error) {
			var out []netip.Addr
			for _, a := range addrs {
				out = append(out, netip.MustParseAddr(a))
			}
			return out, nil
		},
		Link: func(name string) bool {
			for _, l := range links {
				if l == name {
					return true
				}
			}
			return false
		},
	}
}

func TestSetupChecks(t *testing.T) {
	setup := Setup{Coordinators: []string{"http://10.0.0.1:7070"}, VTEP: "172.31.0.5", UnderlayDev: "eth1", Physnets: map[string]string{"physnet1": "eth2"}}
	netOnly := Drivers{Network: "linuxbridge", Compute: "none", Storage: "none", Cache: "none"}
	cases := []struct {
		name    string
		probe   Probe
		d       Drivers
		missing []string
		ok      []string
	}{
		{"all there", fakeProbe(200, []string{"127.0.0.1", "172.31.0.5"}, "eth1", "eth2"), netOnly, nil, []string{"coordinator", "vtep", "underlay", "physnet:physnet1"}},
		{"coordinator down", fakeProbe(0, []string{"172.31.0.5"}, "eth1", "eth2"), netOnly, []string{"coordinator"}, []string{"vtep"}},
		{"coordinator failing", fakeProbe(503, []string{"172.31.0.5"}, "eth1", "eth2"), netOnly, []string{"coordinator"}, nil},
		{"vtep elsewhere", fakeProbe(200, []string{"172.31.0.6"}, "eth1", "eth2"), netOnly, []string{"vtep"}, nil},
		{"no underlay, no physnet device", fakeProbe(200, []string{"172.31.0.5"}), netOnly, []string{"underlay", "physnet:physnet1"}, nil},
		{"no network driver: only the coordinator", fakeProbe(200, nil), Drivers{Network: "none", Compute: "libvirt"}, nil, []string{"coordinator"}},
	}
	for _, c := range cases {
		got := byCheck(SetupChecks(c.probe, setup, c.d))
		for _, m := range c.missing {
			if r := got[m]; r.Status != Missing || !r.Required || r.Fix == "" {
				t.Errorf("%s: %s = %+v, want missing with a fix", c.name, m, r)
			}
		}
		for _, o := range c.ok {
			if got[o].Status != OK {
				t.Errorf("%s: %s = %+v, want ok", c.name, o, got[o])
			}
		}
		if c.d.Network == "none" && len(got) != 1 {
			t.Errorf("%s: network checks on a host without a network driver: %v", c.name, got)
		}
	}
}

// A network-only host (compute none) is not failed on libvirt: no libvirt
// check runs at all.
func TestNetworkOnlyHostSkipsLibvirt(t *testing.T) {
	h := newFakeHost(t, "")
	for _, r := range Run(h.env(), Drivers{Network: "linuxbridge", Compute: "none", Storage: "none", Cache: "none"}, Files{}) {
		if strings.Contains(r.Check, "libvirt") || r.Check == "virsh" || r.Check == "qemu-system-x86_64" {
			t.Errorf("network-only host checks %s", r.Check)
		}
	}
}

// The real probe against this machine: loopback is a device with
// 127.0.0.1 on it, and a coordinator stand-in answers TLS on loopback
// with a certificate of its own, which the probe trusts only when pinned.
func TestHostProbeOnThisMachine(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/openapi.json" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte("{}"))
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	d := Drivers{Network: "linuxbridge", Compute: "none", Storage: "none", Cache: "none"}
	if got := byCheck(SetupChecks(HostProbe(""), Setup{Coordinators: []string{srv.URL}}, d)); got["coordinator"].Status != Missing {
		t.Errorf("coordinator with a CA the probe was not given: %+v", got["coordinator"])
	}
	got := byCheck(SetupChecks(HostProbe(ca), Setup{Coordinators: []string{srv.URL}, VTEP: "127.0.0.1", UnderlayDev: "lo", Physnets: map[string]string{"p1": "lo"}}, d))
	for _, c := range []string{"coordinator", "vtep", "underlay", "physnet:p1"} {
		if got[c].Status != OK {
			t.Errorf("%s: %+v", c, got[c])
		}
	}
	srv.Close()
	got = byCheck(SetupChecks(HostProbe(ca), Setup{Coordinators: []string{srv.URL}, VTEP: "192.0.2.77", UnderlayDev: "s10a-nodev"}, d))
	for _, c := range []string{"coordinator", "vtep", "underlay"} {
		if got[c].Status != Missing {
			t.Errorf("%s after the coordinator stopped / on a foreign address / absent device: %+v", c, got[c])
		}
	}
}

// With several coordinators, each is probed; one down is a warning while
// another answers, and required only when none does.
func TestSetupChecksEveryCoordinator(t *testing.T) {
	up := map[string]bool{"http://c1:7070": false, "http://c2:7070": true}
	p := Probe{Get: func(url string) (int, error) {
		for u, ok := range up {
			if strings.HasPrefix(url, u) && ok {
				return 200, nil
			}
		}
		return 0, errors.New("connection refused")
	}}
	s := Setup{Coordinators: []string{"http://c1:7070", "http://c2:7070"}}
	d := Drivers{Network: "none"}
	got := byCheck(SetupChecks(p, s, d))
	if r := got["coordinator:http://c1:7070"]; r.Status != Warn || r.Required {
		t.Errorf("c1 down while c2 answers: %+v, want an optional warning", r)
	}
	if r := got["coordinator:http://c2:7070"]; r.Status != OK {
		t.Errorf("c2: %+v", r)
	}
	if !NewReport(SetupChecks(p, s, d)).OK {
		t.Error("report fails with one of two coordinators answering")
	}
	up["http://c2:7070"] = false
	got = byCheck(SetupChecks(p, s, d))
	for _, u := range s.Coordinators {
		if r := got["coordinator:"+u]; r.Status != Missing || !r.Required {
			t.Errorf("%s with none answering: %+v, want required and missing", u, r)
		}
	}
}
