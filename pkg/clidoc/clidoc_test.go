package clidoc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// A tree gets one man page per visible command, in its section, with the
// flags, and completions for three shells naming the subcommands.
func TestWrite(t *testing.T) {
	root := &cobra.Command{Use: "democtl", Short: "demo"}
	hosts := &cobra.Command{Use: "hosts", Short: "List hosts", Run: func(*cobra.Command, []string) {}}
	hosts.Flags().Bool("wide", false, "show more columns")
	root.AddCommand(hosts, Command("1"))
	t.Setenv("SOURCE_DATE_EPOCH", "1580000000")
	dir := t.TempDir()
	root.SetArgs([]string{"gen-docs", "--man-dir", filepath.Join(dir, "man"), "--completion-dir", filepath.Join(dir, "compl")})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(filepath.Join(dir, "man", "democtl-hosts.1"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(page), `.TH "democtl" "1" "Jan 2020"`) || !strings.Contains(string(page), "wide") {
		t.Errorf("man page of hosts:\n%s", page)
	}
	if _, err := os.Stat(filepath.Join(dir, "man", "democtl-gen-docs.1")); err == nil {
		t.Error("the hidden gen-docs command got a man page")
	}
	for _, f := range []string{"democtl.bash", "_democtl", "democtl.fish"} {
		b, err := os.ReadFile(filepath.Join(dir, "compl", f))
		if err != nil || !strings.Contains(string(b), "democtl") {
			t.Errorf("completion %s: %v", f, err)
		}
	}
}
