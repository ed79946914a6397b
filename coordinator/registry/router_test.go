package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
)

// TestRouterLinkNamesNeverCollide: a router whose host links (legs named
// with 11 hex digits of a hash) another router of any project already
// derives is refused with a 409 naming the field, over a real store. Names
// cut to one hex digit stand in for the real ones so clashes come at once.
func TestRouterLinkNamesNeverCollide(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "c.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	short := func(s string) string { return s[:strings.IndexByte(s, '-')+2] }
	admitted, refused := 0, 0
	for i := 0; i < 40; i++ {
		r := api.Resource{Kind: "router", Project: fmt.Sprintf("p%d", i%5), Name: fmt.Sprintf("r%d", i)}
		spec := api.RouterSpec{ExternalNetwork: "ext", Interfaces: []api.RouterInterface{{Subnet: "s"}}}
		_, _, err := st.Update(func(tx *store.Tx) error {
			if err := routerLinksFree(&Admission{Tx: tx}, r, spec, short); err != nil {
				return err
			}
			r.Spec, _ = json.Marshal(spec)
			_, _, err := tx.Put(r)
			return err
		})
		var ae *api.Error
		switch {
		case err == nil:
			admitted++
		case errors.As(err, &ae) && ae.Code == http.StatusConflict && (ae.Field == "name" || ae.Field == "spec.interfaces[0].subnet"):
			refused++
		default:
			t.Fatalf("router %s: %v, want admitted or a 409 naming its field", r.Key(), err)
		}
	}
	// Gateway legs: 16 names, so at most 16 routers, and every later one
	// refused; and the full names admit all of them again.
	if admitted > 16 || refused == 0 {
		t.Fatalf("admitted %d, refused %d: want at most 16 admitted and some refused", admitted, refused)
	}
	_, _, err = st.Update(func(tx *store.Tx) error {
		for i := 0; i < 40; i++ {
			r := api.Resource{Kind: "router", Project: fmt.Sprintf("p%d", i%5), Name: fmt.Sprintf("r%d", i)}
			if err := routerLinksFree(&Admission{Tx: tx}, r, api.RouterSpec{ExternalNetwork: "ext", Interfaces: []api.RouterInterface{{Subnet: "s"}}}, nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("full link names clash: %v", err)
	}
}
