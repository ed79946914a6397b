package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestNoSecretInHelp: a token in the environment never shows in --help
// (flag defaults are printed there), and there is no flag that takes one.
func TestNoSecretInHelp(t *testing.T) {
	const secret = "strata_admin_SECRETSECRETSECRET"
	t.Setenv("STRATA_TOKEN", secret)
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"--help"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), secret) {
		t.Fatalf("--help prints the token:\n%s", out.String())
	}
	if root.PersistentFlags().Lookup("token") != nil {
		t.Fatal("a --token flag would put the secret in argv")
	}
}
