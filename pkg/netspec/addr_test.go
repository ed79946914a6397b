package netspec

import "testing"

func TestParseAddrCanonicalNoZone(t *testing.T) {
	for in, want := range map[string]string{
		"2001:DB8:0::1": "2001:db8::1", "::ffff:192.0.2.1": "192.0.2.1", "10.0.0.1": "10.0.0.1",
	} {
		if a, err := ParseAddr(in); err != nil || a.String() != want {
			t.Errorf("ParseAddr(%q) = %v, %v; want %s", in, a, err, want)
		}
	}
	for _, in := range []string{"fe80::1%eth0", "fe80::1%eth0\nserver=1.2.3.4", "10.0.0.1%x", "", "1.2.3"} {
		if a, err := ParseAddr(in); err == nil {
			t.Errorf("ParseAddr(%q) = %v, want an error", in, a)
		}
	}
	if p, err := ParsePrefix("::ffff:10.0.0.0/104"); err != nil || p.String() != "10.0.0.0/8" {
		t.Errorf("mapped prefix: %v %v", p, err)
	}
}
