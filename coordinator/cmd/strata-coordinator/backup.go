package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/strata-infra/strata/coordinator/config"
	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/coordinator/tlsca"
	"github.com/strata-infra/strata/pkg/apiclient"
)

// StoreFile is the name, under the data dir, of the bbolt store.
const StoreFile = "strata.db"

// configured adds --config and the coordinator's flags to cmd and loads
// them before run.
func configured(cmd *cobra.Command, run func(cmd *cobra.Command, cfg *config.Config) error) *cobra.Command {
	var cfg config.Config
	var cfgPath string
	cmd.Flags().StringVar(&cfgPath, "config", config.DefaultPath, "config file (YAML)")
	cfg.BindFlags(cmd.Flags())
	cmd.Args = cobra.NoArgs
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := cfg.Load(cfgPath, cmd.Flags().Changed("config"), cmd.Flags()); err != nil {
			return err
		}
		return run(cmd, &cfg)
	}
	return cmd
}

func backupCmd() *cobra.Command {
	var out, apiURL, tokenFile string
	cmd := configured(&cobra.Command{
		Use:   "backup --out FILE",
		Short: "Write a consistent copy of the store: online over the API, or from the file when the coordinator is stopped",
		Long: `Backup writes a consistent copy of the coordinator's store to FILE.

A running coordinator holds the store file locked: the copy is then taken
over the API (GET /v1/backup, one read transaction; commits go on), with
the admin token of the data dir unless --token-file says otherwise. A
stopped coordinator's file is copied directly. The copy is checked (every
page and record) before the command reports success.`,
	}, func(cmd *cobra.Command, cfg *config.Config) error {
		if out == "" {
			return errors.New("--out is required")
		}
		via, err := backup(cmd.Context(), cfg, out, apiURL, tokenFile)
		if err != nil {
			return err
		}
		st, err := store.Verify(out)
		if err != nil {
			os.Remove(out)
			return fmt.Errorf("the copy does not check out, removed: %w", err)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "backup of epoch %d (history %s, %s) written to %s\n", st.Epoch, st.History, via, out)
		return nil
	})
	cmd.Flags().StringVarP(&out, "out", "o", "", "file to write")
	cmd.Flags().StringVar(&apiURL, "api", "", "back up over this API URL (default: the file if it is free, else --api-url)")
	cmd.Flags().StringVar(&tokenFile, "token-file", "", "admin token for the API (default: <data-dir>/admin.token)")
	return cmd
}

func backup(ctx context.Context, cfg *config.Config, out, apiURL, tokenFile string) (string, error) {
	path := filepath.Join(cfg.DataDir, StoreFile)
	if apiURL == "" {
		if _, err := store.BackupFile(path, out); err == nil {
			return "from the stopped coordinator's file", nil
		}
		apiURL = cfg.APIURL
	}
	if tokenFile == "" {
		tokenFile = filepath.Join(cfg.DataDir, AdminTokenFile)
	}
	tok, err := os.ReadFile(tokenFile)
	if err != nil {
		return "", fmt.Errorf("admin token for an online backup: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(apiURL, "/")+"/v1/backup", nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	// The coordinator's own CA (the operator's, or the one made in the data
	// dir at first start) is what the API's certificate chains to.
	caFile := cfg.TLSCAFile
	if caFile == "" {
		if p := filepath.Join(cfg.DataDir, tlsca.CAFile); statOK(p) {
			caFile = p
		}
	}
	tc, err := apiclient.PinnedTLS(caFile)
	if err != nil {
		return "", fmt.Errorf("online backup: %w", err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return "", fmt.Errorf("online backup: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return "", fmt.Errorf("online backup: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	f, err := os.OpenFile(out+".partial", os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return "", err
	}
	defer os.Remove(out + ".partial")
	_, err = io.Copy(f, resp.Body)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("online backup: %w", err)
	}
	if err := os.Rename(out+".partial", out); err != nil {
		return "", err
	}
	return "online from " + apiURL, nil
}

func restoreCmd() *cobra.Command {
	var from string
	cmd := configured(&cobra.Command{
		Use:   "restore --from FILE",
		Short: "Replace the stopped coordinator's store with a backup",
		Long: `Restore replaces the store in the data dir with the backup FILE. The
coordinator must be stopped. The backup is checked first; a damaged one is
refused and nothing changes. The replaced store is kept beside it as
strata.db.before-restore-<time>.

Every change committed after the backup was taken is undone: hosts
converge on the restored state. The restored store starts a new history:
agents that applied newer epochs of the old one take the restored full
plan (their epoch never goes back: the cluster epoch jumps past theirs),
while an older copy of the same store started by mistake is refused by
every agent that is ahead of it.`,
	}, func(cmd *cobra.Command, cfg *config.Config) error {
		if from == "" {
			return errors.New("--from is required")
		}
		res, err := store.Restore(from, filepath.Join(cfg.DataDir, StoreFile))
		if err != nil {
			return err
		}
		w := cmd.OutOrStdout()
		fmt.Fprintf(w, "restored epoch %d from %s (history %s -> %s)\n", res.Epoch, from, res.OldHistory, res.NewHistory)
		if res.PreviousDB != "" {
			fmt.Fprintf(w, "the replaced store is kept as %s\n", res.PreviousDB)
		}
		return nil
	})
	cmd.Flags().StringVar(&from, "from", "", "backup file to restore")
	return cmd
}

func statOK(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
