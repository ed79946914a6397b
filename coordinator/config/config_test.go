package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/spf13/pflag"
)

// Under systemd (LoadCredential=) the gossip key is read from
// $CREDENTIALS_DIRECTORY, so the file on disk stays root's; without it,
// from gossip_key_file.
func TestLoadTakesGossipKeyFromCredentials(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "coordinator.yaml")
	os.WriteFile(path, []byte("data_dir: "+dir+"\ngossip_key_file: /nonexistent/gossip.key\n"), 0o600)
	creds := filepath.Join(dir, "creds")
	os.Mkdir(creds, 0o700)
	os.WriteFile(filepath.Join(creds, "gossip.key"), []byte("a2V5\n"), 0o600)
	load := func() Config {
		var c Config
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		c.BindFlags(fs)
		if err := c.Load(path, true, fs); err != nil {
			t.Fatal(err)
		}
		return c
	}
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	if c := load(); c.GossipKeyFile != "/nonexistent/gossip.key" {
		t.Fatalf("outside systemd: key %s, want the configured path", c.GossipKeyFile)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", creds)
	if c := load(); c.GossipKeyFile != filepath.Join(creds, "gossip.key") {
		t.Errorf("gossip key %s, want the credential", c.GossipKeyFile)
	}
}
