package ctl

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"sigs.k8s.io/yaml"
)

// Table is rows with a header, printed as aligned columns or as JSON.
type Table struct {
	Header []string
	Rows   [][]string
}

// Formats are the values of --output.
const Formats = "table, json or yaml"

// CheckFormat refuses an unknown --output before anything is sent.
func CheckFormat(format string) error {
	switch format {
	case "table", "json", "yaml", "":
		return nil
	}
	return fmt.Errorf("output format %q: want %s", format, Formats)
}

// Print writes v as JSON or YAML (the same fields: YAML is made from the
// JSON), else t as a table.
func Print(w io.Writer, format string, v any, t Table) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "yaml":
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		y, err := yaml.JSONToYAML(b)
		if err != nil {
			return err
		}
		_, err = w.Write(y)
		return err
	case "table", "":
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, strings.Join(t.Header, "\t"))
		for _, r := range t.Rows {
			fmt.Fprintln(tw, strings.Join(r, "\t"))
		}
		return tw.Flush()
	}
	return fmt.Errorf("output format %q: want %s", format, Formats)
}
