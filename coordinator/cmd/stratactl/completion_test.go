package main

import (
	"strings"
	"testing"
)

// complete runs the shell's completion request and returns the offered
// words (cobra's __complete prints them a line each, then the directive).
func (c *cli) complete(args ...string) []string {
	c.t.Helper()
	out := c.must(append([]string{"__complete"}, args...)...)
	var words []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l != "" && !strings.HasPrefix(l, ":") && !strings.HasPrefix(l, "Completion ended") {
			words = append(words, l)
		}
	}
	return words
}

// TestCompletesResourceNames: tab completes a command's NAME from the
// coordinator (in the project of -p or $STRATA_PROJECT), a second
// argument by the kind its usage names, and flags named after a kind.
func TestCompletesResourceNames(t *testing.T) {
	c := newCLI(t)
	c.must("projects", "create", "q")
	c.must("networks", "create", "-p", "p", "app")
	c.must("networks", "create", "-p", "p", "api")
	c.must("networks", "create", "-p", "q", "other")
	c.must("subnets", "create", "-p", "p", "s1", "--network", "app", "--cidr", "10.1.0.0/24")
	c.must("flavors", "create", "small")
	c.must("routers", "create", "-p", "p", "r1")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"networks", "show", "-p", "p", ""}, "api app"},
		{[]string{"networks", "show", "-p", "p", "ap"}, "api app"},
		{[]string{"networks", "show", "-p", "p", "app", ""}, ""},
		{[]string{"networks", "delete", "-p", "q", ""}, "other"},
		{[]string{"subnets", "create", "-p", "p", "s2", "--network", ""}, "api app"},
		{[]string{"instances", "create", "-p", "p", "vm", "--flavor", ""}, "small"},
		{[]string{"routers", "add-interface", "-p", "p", "r1", ""}, "s1"},
		{[]string{"hosts", "show", ""}, "h1"},
		{[]string{"networks", "list", "-p", ""}, "p q"},
	} {
		if got := strings.Join(c.complete(tc.args...), " "); got != tc.want {
			t.Errorf("complete %q: got %q, want %q", tc.args, got, tc.want)
		}
	}
	t.Setenv("STRATA_PROJECT", "q")
	if got := strings.Join(c.complete("networks", "show", ""), " "); got != "other" {
		t.Errorf("complete with STRATA_PROJECT=q: got %q", got)
	}
}
