package config

import (
	"os"
	"path/filepath"
	"strings"
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

// The scheduler section: allocation ratios and spread or pack reach the
// scheduler's configuration; bad values are refused naming the key.
func TestSchedulerSection(t *testing.T) {
	dir := t.TempDir()
	load := func(yaml string) (Config, error) {
		path := filepath.Join(dir, "coordinator.yaml")
		os.WriteFile(path, []byte("data_dir: "+dir+"\n"+yaml), 0o600)
		var c Config
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		c.BindFlags(fs)
		err := c.Load(path, true, fs)
		return c, err
	}
	c, err := load("")
	if err != nil {
		t.Fatal(err)
	}
	if sc := c.SchedulerConfig(); sc.Ratios.VCPU != 16 || sc.Ratios.RAM != 1 || sc.Ratios.Disk != 1 || !sc.Spread {
		t.Fatalf("defaults: %+v", sc)
	}
	c, err = load("scheduler:\n  cpu_allocation_ratio: 4\n  ram_allocation_ratio: 1.5\n  disk_allocation_ratio: 2\n  placement: pack\n")
	if err != nil {
		t.Fatal(err)
	}
	if sc := c.SchedulerConfig(); sc.Ratios.VCPU != 4 || sc.Ratios.RAM != 1.5 || sc.Ratios.Disk != 2 || sc.Spread {
		t.Fatalf("from the file: %+v", sc)
	}
	for yaml, key := range map[string]string{
		"scheduler:\n  ram_allocation_ratio: 0\n":  "scheduler.ram_allocation_ratio",
		"scheduler:\n  cpu_allocation_ratio: -1\n": "scheduler.cpu_allocation_ratio",
		"scheduler:\n  placement: fill\n":          "scheduler.placement",
	} {
		if _, err := load(yaml); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%q: %v, want an error naming %s", yaml, err, key)
		}
	}
}
