package nftsync

import (
	"encoding/binary"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// kernelSet is the library's set for s.
func kernelSet(t *nftables.Table, s Set) *nftables.Set {
	set := &nftables.Set{Table: t, Name: s.Name, KeyType: nftables.TypeIPAddr}
	if len(s.Fields) > 0 {
		types := make([]nftables.SetDatatype, len(s.Fields))
		for i, f := range s.Fields {
			types[i] = f.datatype()
		}
		set.KeyType = nftables.MustConcatSetType(types...)
		set.Concatenation, set.Interval = true, true
		if s.VMap {
			set.IsMap, set.DataType = true, nftables.TypeVerdict
		}
		return set
	}
	if s.IsMap {
		set.IsMap, set.DataType = true, nftables.TypeIPAddr
	}
	return set
}

// sameKind reports whether an existing set can keep its elements updated
// in place to become want.
func sameKind(old, want *nftables.Set) bool {
	return old.IsMap == want.IsMap && old.Interval == want.Interval && old.Concatenation == want.Concatenation
}

// kernelElems are s's elements as the library sends them.
func kernelElems(s Set) []nftables.SetElement {
	var elems []nftables.SetElement
	if len(s.Fields) > 0 {
		for _, r := range s.Ranges {
			el := nftables.SetElement{Key: r.From, KeyEnd: r.To}
			if s.VMap {
				v := r.Verdict
				el.VerdictData = &v
			}
			elems = append(elems, el)
		}
		return elems
	}
	for _, e := range s.Elems {
		el := nftables.SetElement{Key: e.Key.AsSlice()}
		if s.IsMap {
			el.Val = e.Val.AsSlice()
		}
		elems = append(elems, el)
	}
	return elems
}

// elemID is an element's identity: its keys and what it maps to. An
// element read from the kernel and the one Sync built have the same ID.
func elemID(e nftables.SetElement) string {
	id := string(e.Key) + "-" + string(e.KeyEnd) + "="
	switch {
	case e.VerdictData != nil:
		return id + verdictID(e.VerdictData.Kind, e.VerdictData.Chain)
	case len(e.KeyEnd) > 0 && len(e.Val) > 0: // a verdict read back
		return id + readVerdictID(e.Val)
	}
	return id + string(e.Val)
}

func verdictID(k expr.VerdictKind, chain string) string { return fmt.Sprintf("v%d:%s", k, chain) }

// readVerdictID decodes the verdict the kernel dumps as an element's data:
// NFTA_VERDICT_CODE and, for jump and goto, NFTA_VERDICT_CHAIN.
func readVerdictID(b []byte) string {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return "?" + string(b)
	}
	ad.ByteOrder = binary.BigEndian
	var code int32
	var chain string
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_VERDICT_CODE:
			code = int32(ad.Uint32())
		case unix.NFTA_VERDICT_CHAIN:
			chain = ad.String()
		}
	}
	if ad.Err() != nil {
		return "?" + string(b)
	}
	return verdictID(expr.VerdictKind(code), chain)
}

func syncSets(c *nftables.Conn, t *nftables.Table, want []Set, have, next snapshot, st *Stats, del *deletions) error {
	wantNames := map[string]bool{}
	for _, ws := range want {
		wantNames[ws.Name] = true
		set := kernelSet(t, ws)
		elems := kernelElems(ws)
		wantIDs := make(map[string]bool, len(elems))
		for _, e := range elems {
			wantIDs[elemID(e)] = true
		}
		next.elems[ws.Name] = elems
		old, ok := have.sets[ws.Name]
		if !ok || !sameKind(old, set) {
			next.sets[ws.Name] = set
			if ok {
				// Same name, another kind: the old one goes first (a
				// rule naming it must change in the same batch).
				c.DelSet(old)
				st.Objects++
			}
			if err := c.AddSet(set, elems); err != nil {
				return fmt.Errorf("add set %q: %w", ws.Name, err)
			}
			st.Objects++
			st.ElemsAdded += len(elems)
			continue
		}
		next.sets[ws.Name] = old
		var drop, add []nftables.SetElement
		haveIDs := map[string]bool{}
		for _, e := range have.elems[ws.Name] {
			id := elemID(e)
			haveIDs[id] = true
			if !wantIDs[id] {
				drop = append(drop, nftables.SetElement{Key: e.Key, KeyEnd: e.KeyEnd})
			}
		}
		for _, e := range elems {
			if !haveIDs[elemID(e)] {
				add = append(add, e)
			}
		}
		// An element whose value changed is deleted, then added: inside
		// one batch nothing ever sees it missing.
		if len(drop) > 0 {
			if err := c.SetDeleteElements(old, drop); err != nil {
				return fmt.Errorf("delete elements of %q: %w", ws.Name, err)
			}
		}
		if len(add) > 0 {
			if err := c.SetAddElements(old, add); err != nil {
				return fmt.Errorf("add elements to %q: %w", ws.Name, err)
			}
		}
		st.ElemsAdded += len(add)
		st.ElemsDeleted += len(drop)
	}
	for name, old := range have.sets {
		if !wantNames[name] {
			del.sets = append(del.sets, func() { c.DelSet(old) })
			st.Objects++
		}
	}
	return nil
}
