// Package config merges a daemon's configuration in the order operators
// expect: built-in defaults, then the YAML file, then command-line flags.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"
)

// Load resets cfg with setDefaults, overlays the YAML file at path (a
// missing file is fine unless required), then re-applies every flag the
// user set. Flags must be bound to cfg's fields. Unknown YAML keys are an
// error naming the key, so typos do not pass silently.
func Load(path string, required bool, cfg any, setDefaults func(), flags *pflag.FlagSet) error {
	type setFlag struct {
		f     *pflag.Flag
		value string
		slice []string
	}
	var set []setFlag
	flags.Visit(func(f *pflag.Flag) {
		sf := setFlag{f: f, value: f.Value.String()}
		if f.Value.Type() == "stringToString" {
			// Its String() wraps the pairs in brackets Set does not take.
			sf.value = strings.TrimSuffix(strings.TrimPrefix(sf.value, "["), "]")
		}
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			sf.slice = sv.GetSlice()
		}
		set = append(set, sf)
	})
	setDefaults()
	if path != "" {
		data, err := os.ReadFile(path)
		switch {
		case errors.Is(err, fs.ErrNotExist) && !required:
		case err != nil:
			return fmt.Errorf("read config %q: %w", path, err)
		default:
			if err := yaml.UnmarshalStrict(data, cfg); err != nil {
				return fmt.Errorf("config %q: %w", path, err)
			}
		}
	}
	for _, sf := range set {
		if sv, ok := sf.f.Value.(pflag.SliceValue); ok {
			if err := sv.Replace(sf.slice); err != nil {
				return fmt.Errorf("flag --%s: %w", sf.f.Name, err)
			}
			continue
		}
		if err := sf.f.Value.Set(sf.value); err != nil {
			return fmt.Errorf("flag --%s: %w", sf.f.Name, err)
		}
	}
	return nil
}
