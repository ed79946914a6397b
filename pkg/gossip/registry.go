package gossip

import (
	"encoding/base64"
	"encoding/json"
	"net/netip"

	"github.com/strata-infra/strata/pkg/api"
)

// Identities turns hostidentity resources (from the store, or a host's
// plan) into the admission list. One whose address does not parse admits
// nobody under that name.
func Identities(rs []api.Resource) map[string]Identity {
	ids := make(map[string]Identity, len(rs))
	for _, r := range rs {
		var spec api.HostIdentitySpec
		if json.Unmarshal(r.Spec, &spec) != nil {
			continue
		}
		addr, err := netip.ParseAddr(spec.Addr)
		if err != nil {
			continue
		}
		id := Identity{Addr: addr, Coordinator: spec.Role == api.IdentityCoordinator}
		if spec.VTEP != "" {
			id.VTEP, _ = netip.ParseAddr(spec.VTEP)
		}
		ids[r.Name] = id
	}
	return ids
}

// DecodeKeyring checks and decodes a keyring: 1 to 4 distinct AES keys
// (16, 24 or 32 bytes), the primary among them.
func DecodeKeyring(s api.GossipKeyringSpec) (keys [][]byte, primary []byte, err error) {
	if len(s.Keys) == 0 || len(s.Keys) > 4 {
		return nil, nil, api.Fieldf("spec.keys", "has %d keys, want 1 to 4", len(s.Keys))
	}
	seen := map[string]bool{}
	for i, k := range s.Keys {
		b, err := base64.StdEncoding.DecodeString(k)
		if err != nil || (len(b) != 16 && len(b) != 24 && len(b) != 32) {
			return nil, nil, api.Fieldf("spec.keys", "key %d is not base64 of 16, 24 or 32 bytes", i)
		}
		if seen[k] {
			return nil, nil, api.Fieldf("spec.keys", "key %d is given twice", i)
		}
		seen[k] = true
		keys = append(keys, b)
		if k == s.Primary {
			primary = b
		}
	}
	if primary == nil {
		return nil, nil, api.Fieldf("spec.primary", "is not one of spec.keys")
	}
	return keys, primary, nil
}

// EncodeKeyring is DecodeKeyring's inverse.
func EncodeKeyring(keys [][]byte, primary []byte) api.GossipKeyringSpec {
	var s api.GossipKeyringSpec
	for _, k := range keys {
		s.Keys = append(s.Keys, base64.StdEncoding.EncodeToString(k))
	}
	s.Primary = base64.StdEncoding.EncodeToString(primary)
	return s
}
