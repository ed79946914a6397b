package attach_test

import (
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/strata-infra/strata/agent/storage/attach"
	"github.com/strata-infra/strata/internal/cephtest"
)

func TestMain(m *testing.M) { cephtest.Main(m, "s13a", "volumes") }

func TestParseMonHost(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"[v2:10.0.0.1:3300,v1:10.0.0.1:6789]", "[10.0.0.1:6789]"},
		{"[v2:10.0.0.1:3300/0,v1:10.0.0.1:6789/0] [v2:10.0.0.2:3300,v1:10.0.0.2:6789]", "[10.0.0.1:6789 10.0.0.2:6789]"},
		{"10.0.0.1,10.0.0.2:6790", "[10.0.0.1:6789 10.0.0.2:6790]"},
	} {
		got, err := attach.ParseMonHost(tt.in)
		if err != nil || fmt.Sprint(got) != tt.want {
			t.Errorf("ParseMonHost(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "[v2:10.0.0.1:3300]", "mon.example"} {
		if _, err := attach.ParseMonHost(bad); err == nil {
			t.Errorf("ParseMonHost(%q) accepted", bad)
		}
	}
}

func uuid() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
