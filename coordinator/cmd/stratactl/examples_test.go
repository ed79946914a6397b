package main

import (
	"strings"
	"testing"
)

// words splits an example line as a shell would for these simple lines:
// on spaces, with "double quotes" kept together, up to a # comment or a
// redirection.
func words(line string) []string {
	var out []string
	var cur strings.Builder
	quoted, in := false, false
	for _, r := range line {
		switch {
		case r == '"':
			quoted, in = !quoted, true
		case !quoted && (r == '#' || r == '<'):
			if in {
				out = append(out, cur.String())
			}
			return out
		case !quoted && r == ' ':
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if in {
		out = append(out, cur.String())
	}
	return out
}

// TestHelpExamplesParse: every line of every help example is a stratactl
// command this stratactl accepts: the command exists, each flag is one
// of its flags with a valid value, and the arguments are as many as it
// takes. Every create command has an example.
func TestHelpExamplesParse(t *testing.T) {
	n := 0
	for path, ex := range examples {
		for _, line := range strings.Split(ex, "\n") {
			args := words(line)
			if len(args) < 2 || args[0] != "stratactl" {
				t.Errorf("%s: example %q does not start with stratactl", path, line)
				continue
			}
			root := newRoot()
			cmd, rest, err := root.Find(args[1:])
			if err != nil || cmd.CommandPath() != "stratactl "+path {
				t.Errorf("%s: example %q runs %q (%v)", path, line, cmd.CommandPath(), err)
				continue
			}
			if err := cmd.ParseFlags(rest); err != nil {
				t.Errorf("%s: example %q: %v", path, line, err)
				continue
			}
			if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
				t.Errorf("%s: example %q: %v", path, line, err)
			}
			if err := cmd.ValidateRequiredFlags(); err != nil {
				t.Errorf("%s: example %q: %v", path, line, err)
			}
			n++
		}
	}
	root := newRoot()
	for _, kind := range root.Commands() {
		for _, sub := range kind.Commands() {
			if sub.Name() == "create" && sub.Example == "" {
				t.Errorf("%s has no example", sub.CommandPath())
			}
		}
	}
	t.Logf("%d example lines parse", n)
}
