package credential

import (
	"os"
	"path/filepath"
	"testing"
)

func TestPath(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "gossip.key"), []byte("k\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(DirEnv, "")
	if got := Path("gossip.key", "/etc/strata/gossip.key"); got != "/etc/strata/gossip.key" {
		t.Errorf("no credentials directory: got %s, want the configured path", got)
	}
	t.Setenv(DirEnv, dir)
	if got, want := Path("gossip.key", "/etc/strata/gossip.key"), filepath.Join(dir, "gossip.key"); got != want {
		t.Errorf("credential passed: got %s, want %s", got, want)
	}
	if got := Path("agent.token", "/etc/strata/agent.token"); got != "/etc/strata/agent.token" {
		t.Errorf("credential not passed: got %s, want the configured path", got)
	}
}
