package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// Defaults, then the file, then the flags the user set.
func TestLoadMergesDefaultsFileFlags(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.yaml")
	os.WriteFile(path, []byte("name: file-name\nzone: az9\nvtep: 10.0.0.7\nnetwork:\n  physical_networks: {physnet1: eth1}\n"), 0o600)
	var c Config
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	c.BindFlags(fs)
	if err := fs.Parse([]string{"--zone", "az1", "--physnet", "physnet2=eth2", "--join", "10.0.0.1:7946"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Load(path, true, fs); err != nil {
		t.Fatal(err)
	}
	if c.Name != "file-name" || c.Zone != "az1" || c.Gossip.Profile != "lan" || len(c.Gossip.Join) != 1 {
		t.Fatalf("merged config %+v", c)
	}
	if c.Network.PhysicalNetworks["physnet1"] != "eth1" || c.Network.PhysicalNetworks["physnet2"] != "eth2" {
		t.Fatalf("physical networks %v", c.Network.PhysicalNetworks)
	}
}

func TestLoadNamesTheBadKey(t *testing.T) {
	cases := map[string]string{
		"colour: red\n":                                  "colour",
		"vtep: not-an-ip\n":                              "vtep",
		"vtep: 10.0.0.1\ngossip: {profile: wan}\n":       "gossip.profile",
		"vtep: 10.0.0.1\nnetwork: {driver: ovs-magic}\n": "network.driver",
		"network: {driver: linuxbridge}\n":               "vtep",
		"vtep: 10.0.0.1\nstorage: {ceph: {mon_host: 10.0.0.5}, cache: {device: nvme0n1}}\n":                     "storage.cache.device",
		"vtep: 10.0.0.1\nstorage: {ceph: {mon_host: 10.0.0.5}, cache: {flush_timeout: 10ms}}\n":                 "storage.cache.flush_timeout",
		"vtep: 10.0.0.1\nstorage: {ceph: {mon_host: 10.0.0.5}, cache: {idle_clean_after: 10ms}}\n":              "storage.cache.idle_clean_after",
		"vtep: 10.0.0.1\nstorage: {ceph: {mon_host: 10.0.0.5}, cache: {volume_group: \"a b\"}}\n":               "storage.cache.volume_group",
		"vtep: 10.0.0.1\nstorage: {ceph: {mon_host: 10.0.0.5}, cache: {device: /dev/sdb, volume_group: vg0}}\n": "storage.cache.volume_group",
	}
	for body, key := range cases {
		path := filepath.Join(t.TempDir(), "agent.yaml")
		os.WriteFile(path, []byte("name: h1\n"+body), 0o600)
		var c Config
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		c.BindFlags(fs)
		err := c.Load(path, true, fs)
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%q: error %v, want one naming %q", body, err, key)
		}
	}
}

// Under systemd (LoadCredential=) the token and gossip key are read from
// $CREDENTIALS_DIRECTORY; without it, from the configured paths.
func TestLoadTakesSecretsFromCredentials(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.yaml")
	os.WriteFile(path, []byte("name: h1\nvtep: 10.0.0.7\ntoken_file: /nonexistent/agent.token\n"), 0o600)
	creds := filepath.Join(dir, "creds")
	os.Mkdir(creds, 0o700)
	os.WriteFile(filepath.Join(creds, "agent.token"), []byte("tok-from-credential\n"), 0o600)
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
	if c := load(); c.TokenFile != "/nonexistent/agent.token" || c.Gossip.KeyFile != "/etc/strata/gossip.key" {
		t.Fatalf("outside systemd: token %s, key %s; want the configured paths", c.TokenFile, c.Gossip.KeyFile)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", creds)
	c := load()
	if c.Gossip.KeyFile != filepath.Join(creds, "gossip.key") {
		t.Errorf("gossip key %s, want the credential", c.Gossip.KeyFile)
	}
	if tok, err := c.Token(); err != nil || tok != "tok-from-credential" {
		t.Errorf("token %q (%v), want the credential's", tok, err)
	}
}

// A host with Ceph announces a backend per pool it is configured for;
// one without announces none; a bad pool name is refused naming its key.
func TestStorageBackends(t *testing.T) {
	s := DefaultStorage()
	if b := s.Backends(); b != nil {
		t.Fatalf("no Ceph: backends %v, want none", b)
	}
	s.Ceph.MonHost = "10.0.0.5"
	s.Pools = []string{"fast", "volumes"}
	if b := strings.Join(s.Backends(), " "); b != "rbd:fast rbd:images rbd:volumes" {
		t.Fatalf("backends %q", b)
	}
	if err := s.validate(); err != nil {
		t.Fatal(err)
	}
	s.Pools = []string{"ok", "bad pool"}
	if err := s.validate(); err == nil || !strings.Contains(err.Error(), "storage.pools[1]") {
		t.Fatalf("bad pool: %v, want an error naming storage.pools[1]", err)
	}
}

// The coordinator key takes one URL (the single-coordinator form), a
// list, or a comma-separated string; the flag a comma-separated string.
func TestCoordinatorURLs(t *testing.T) {
	for text, want := range map[string]string{
		"coordinator: https://c1:7070\n":                      "https://c1:7070",
		"coordinator: [https://c1:7070, https://c2:7070/]\n":  "https://c1:7070,https://c2:7070",
		"coordinator: \"https://c1:7070, https://c2:7070\"\n": "https://c1:7070,https://c2:7070",
	} {
		path := filepath.Join(t.TempDir(), "agent.yaml")
		os.WriteFile(path, []byte("name: h1\nvtep: 10.0.0.1\n"+text), 0o600)
		var c Config
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		c.BindFlags(fs)
		if err := c.Load(path, true, fs); err != nil {
			t.Fatalf("%q: %v", text, err)
		}
		if got := c.Coordinator.String(); got != want {
			t.Fatalf("%q: coordinators %q, want %q", text, got, want)
		}
	}
	var c Config
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	c.BindFlags(fs)
	if err := fs.Parse([]string{"--name", "h1", "--vtep", "10.0.0.1", "--coordinator", "http://127.0.0.1:1,http://127.0.0.1:2"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Load("", false, fs); err != nil || len(c.Coordinator) != 2 {
		t.Fatalf("flag: %v %q", err, c.Coordinator)
	}
	path := filepath.Join(t.TempDir(), "agent.yaml")
	os.WriteFile(path, []byte("name: h1\nvtep: 10.0.0.1\ncoordinator: [c1:7070]\n"), 0o600)
	c = Config{}
	fs = pflag.NewFlagSet("t", pflag.ContinueOnError)
	c.BindFlags(fs)
	if err := c.Load(path, true, fs); err == nil || !strings.Contains(err.Error(), "coordinator[0]") {
		t.Fatalf("a URL without a scheme: %v, want an error naming coordinator[0]", err)
	}
}
