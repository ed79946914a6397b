package main

import (
	"github.com/spf13/cobra"

	"github.com/strata-infra/strata/coordinator/ctl"
	"github.com/strata-infra/strata/pkg/version"
)

type versions struct {
	Client version.Info  `json:"client"`
	Server *version.Info `json:"server,omitempty"`
}

func versionCmd(g *globals) *cobra.Command {
	var clientOnly bool
	cmd := &cobra.Command{
		Use: "version", Short: "The versions of stratactl and of the coordinator it talks to", Args: cobra.NoArgs,
		Example: "  stratactl version\n  stratactl version --client -o json",
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := versions{Client: version.Get()}
			t := ctl.Table{Header: []string{"", "VERSION", "GO", "COMMIT"}, Rows: [][]string{{"client", v.Client.Version, v.Client.GoVersion, v.Client.Commit}}}
			if !clientOnly {
				c, err := g.client()
				if err != nil {
					return err
				}
				var s version.Info
				if err := c.Do(cmd.Context(), "GET", "/v1/version", nil, &s); err != nil {
					return err
				}
				v.Server = &s
				t.Rows = append(t.Rows, []string{"server", s.Version, s.GoVersion, s.Commit})
			}
			return g.print(cmd, v, t)
		},
	}
	cmd.Flags().BoolVar(&clientOnly, "client", false, "only stratactl's own version; ask no server")
	return cmd
}
