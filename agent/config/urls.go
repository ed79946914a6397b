package config

import (
	"encoding/json"
	"strings"
)

// URLs is a list of URLs that a config file may give as one string (the
// single-coordinator form; commas separate several) or as a list, and a
// flag as a comma-separated string.
type URLs []string

// UnmarshalJSON takes a string or a list of strings.
func (u *URLs) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*u = splitURLs(one)
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*u = nil
	for _, m := range many {
		*u = append(*u, splitURLs(m)...)
	}
	return nil
}

func splitURLs(s string) URLs {
	var out URLs
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimRight(strings.TrimSpace(p), "/"); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// String is the comma-separated form.
func (u *URLs) String() string { return strings.Join(*u, ",") }

// Set replaces the list with a comma-separated one (a flag).
func (u *URLs) Set(s string) error {
	*u = splitURLs(s)
	return nil
}

// Type names the flag's value.
func (u *URLs) Type() string { return "urls" }
