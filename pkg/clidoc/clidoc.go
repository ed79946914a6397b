// Package clidoc makes a command line's man pages and shell completions
// from its cobra commands, so that what the packages install is what the
// binary takes: packaging/build.sh runs `<binary> gen-docs`.
package clidoc

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// Command is the hidden `gen-docs` command: man pages of section (1 for
// stratactl, 8 for the daemons) into --man-dir and bash, zsh and fish
// completions into --completion-dir, for the root of the tree it is in.
func Command(section string) *cobra.Command {
	var manDir, complDir string
	cmd := &cobra.Command{
		Use:    "gen-docs",
		Short:  "Write the man pages and shell completions (for packaging)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return Write(cmd.Root(), section, manDir, complDir)
		},
	}
	cmd.Flags().StringVar(&manDir, "man-dir", "", "directory for the man pages (empty: none)")
	cmd.Flags().StringVar(&complDir, "completion-dir", "", "directory for <name>.bash, _<name> (zsh) and <name>.fish (empty: none)")
	return cmd
}

// Write writes root's man pages (one per command, hidden ones left out)
// and its completions.
func Write(root *cobra.Command, section, manDir, complDir string) error {
	name := root.Name()
	if manDir != "" {
		if err := os.MkdirAll(manDir, 0o755); err != nil {
			return err
		}
		root.DisableAutoGenTag = true // the pages stay the same across builds
		hdr := &doc.GenManHeader{Title: name, Section: section, Source: "Strata", Manual: "Strata Manual"}
		// Reproducible builds: the date is the build's (packaging/build.sh
		// sets SOURCE_DATE_EPOCH to the commit's), not today's.
		if sec, err := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64); err == nil {
			when := time.Unix(sec, 0).UTC()
			hdr.Date = &when
		}
		if err := doc.GenManTree(root, hdr, manDir); err != nil {
			return fmt.Errorf("man pages: %w", err)
		}
	}
	if complDir == "" {
		return nil
	}
	if err := os.MkdirAll(complDir, 0o755); err != nil {
		return err
	}
	for file, gen := range map[string]func(string) error{
		name + ".bash": func(p string) error { return root.GenBashCompletionFileV2(p, true) },
		"_" + name:     root.GenZshCompletionFile,
		name + ".fish": func(p string) error { return root.GenFishCompletionFile(p, true) },
	} {
		if err := gen(filepath.Join(complDir, file)); err != nil {
			return fmt.Errorf("completion %s: %w", file, err)
		}
	}
	return nil
}
