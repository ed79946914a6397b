package storagespec

import "testing"

func TestAddrIP(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.7:0/123":                    "10.0.0.7",
		"v1:10.0.0.7:0/3406925":             "10.0.0.7",
		"10.0.0.7:0/0":                      "10.0.0.7",
		"[v2:10.0.0.7:0/1,v1:10.0.0.7:0/1]": "10.0.0.7",
		"10.0.0.7":                          "10.0.0.7",
		"[fd00::7]:0/12":                    "fd00::7",
		"client.4123":                       "",
		"":                                  "",
	} {
		if got := AddrIP(in); got != want {
			t.Errorf("AddrIP(%q) = %q, want %q", in, got, want)
		}
	}
}
