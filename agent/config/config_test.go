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
