package nftsync

import (
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"strconv"

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
		set.Concatenation, set.Interval = !s.Exact, !s.Exact
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

// wantElems are s's elements by elemID, and a function making the i-th
// one as the library sends it.
func wantElems(s Set) (map[string]nftables.SetElement, func(id string) nftables.SetElement) {
	ids := make(map[string]nftables.SetElement, len(s.Elems)+len(s.Ranges))
	if len(s.Fields) > 0 {
		for i := range s.Ranges {
			r := &s.Ranges[i]
			v := ""
			if s.VMap {
				v = verdictID(r.Verdict.Kind, r.Verdict.Chain)
			}
			to := r.To
			if s.Exact {
				to = nil
			}
			ids[rangeID(r.From, to, v)] = nftables.SetElement{Key: r.From, KeyEnd: to, VerdictData: &r.Verdict}
		}
		return ids, func(id string) nftables.SetElement {
			e := ids[id]
			if !s.VMap {
				e.VerdictData = nil
			}
			return e
		}
	}
	for _, e := range s.Elems {
		el := nftables.SetElement{Key: e.Key.AsSlice()}
		if s.IsMap {
			el.Val = e.Val.AsSlice()
		}
		ids[elemID(el, false)] = el
	}
	return ids, func(id string) nftables.SetElement { return ids[id] }
}

func rangeID(from, to []byte, verdict string) string {
	b := make([]byte, 0, len(from)+len(to)+2+len(verdict))
	b = append(append(append(append(append(b, from...), '-'), to...), '='), verdict...)
	return string(b)
}

// span is where an element's key and key end sit in its ID (rangeID:
// key, '-', key end, '=', value). The engine remembers elements by ID and
// span alone: a snapshot of 10,000 elements held whole elements (and,
// through their verdicts, every range the last Sync was asked for), the
// largest part of an agent's heap at rest.
type span struct{ key, end uint16 }

func spanOf(e nftables.SetElement) span { return span{uint16(len(e.Key)), uint16(len(e.KeyEnd))} }

// keys is the element of ID id as a deletion names it: key and key end.
func (s span) keys(id string) nftables.SetElement {
	e := nftables.SetElement{Key: []byte(id[:s.key])}
	if s.end > 0 {
		e.KeyEnd = []byte(id[s.key+1 : s.key+1+s.end])
	}
	return e
}

// elemID is an element's identity: its keys and what it maps to. An
// element read from the kernel and the one Sync built have the same ID.
func elemID(e nftables.SetElement, vmap bool) string {
	switch {
	case e.VerdictData != nil:
		return rangeID(e.Key, e.KeyEnd, verdictID(e.VerdictData.Kind, e.VerdictData.Chain))
	case vmap: // a verdict read back
		return rangeID(e.Key, e.KeyEnd, readVerdictID(e.Val))
	}
	return rangeID(e.Key, e.KeyEnd, string(e.Val))
}

func verdictID(k expr.VerdictKind, chain string) string {
	return "v" + strconv.Itoa(int(k)) + ":" + chain
}

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
		sum := fingerprint(ws)
		if old, ok := have.sets[ws.Name]; ok && sameKind(old, set) && have.elems[ws.Name] != nil && sameSum(have.sums, ws.Name, sum) {
			// What this engine applied last, and the kernel has not
			// changed since: nothing to compare.
			next.sets[ws.Name], next.elems[ws.Name], next.sums[ws.Name] = old, have.elems[ws.Name], sum
			continue
		}
		next.sums[ws.Name] = sum
		wantIDs, elem := wantElems(ws)
		spans := make(map[string]span, len(wantIDs))
		for id, e := range wantIDs {
			spans[id] = spanOf(e)
		}
		next.elems[ws.Name] = spans
		old, ok := have.sets[ws.Name]
		if !ok || !sameKind(old, set) {
			next.sets[ws.Name] = set
			if ok {
				// Same name, another kind: the old one goes first (a
				// rule naming it must change in the same batch).
				c.DelSet(old)
				st.Objects++
			}
			elems := make([]nftables.SetElement, 0, len(wantIDs))
			for id := range wantIDs {
				elems = append(elems, elem(id))
			}
			if err := c.AddSet(set, nil); err != nil {
				return fmt.Errorf("add set %q: %w", ws.Name, err)
			}
			if err := inChunks(elems, func(es []nftables.SetElement) error { return c.SetAddElements(set, es) }); err != nil {
				return fmt.Errorf("add elements to %q: %w", ws.Name, err)
			}
			st.Objects++
			st.ElemsAdded += len(elems)
			continue
		}
		next.sets[ws.Name] = old
		var drop, add []nftables.SetElement
		haveIDs := have.elems[ws.Name]
		for id, sp := range haveIDs {
			if _, ok := wantIDs[id]; !ok {
				drop = append(drop, sp.keys(id))
			}
		}
		for id := range wantIDs {
			if _, ok := haveIDs[id]; !ok {
				add = append(add, elem(id))
			}
		}
		// An element whose value changed is deleted, then added: inside
		// one batch nothing ever sees it missing.
		if err := inChunks(drop, func(es []nftables.SetElement) error { return c.SetDeleteElements(old, es) }); err != nil {
			return fmt.Errorf("delete elements of %q: %w", ws.Name, err)
		}
		if err := inChunks(add, func(es []nftables.SetElement) error { return c.SetAddElements(old, es) }); err != nil {
			return fmt.Errorf("add elements to %q: %w", ws.Name, err)
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

// chunk is how many elements go in one message: the element list is one
// netlink attribute, whose length is 16 bits, so a list of more than about
// 64 KiB would be cut short. Chunks are messages of the same batch.
const chunk = 256

func inChunks(elems []nftables.SetElement, f func([]nftables.SetElement) error) error {
	for len(elems) > 0 {
		n := min(chunk, len(elems))
		if err := f(elems[:n]); err != nil {
			return err
		}
		elems = elems[n:]
	}
	return nil
}

// fingerprint hashes a set's wanted content, so an engine that applied it
// and finds the kernel unchanged since skips the element diff.
func fingerprint(s Set) uint64 {
	var h maphash.Hash
	h.SetSeed(fpSeed)
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(s.Elems))<<32|uint64(len(s.Ranges)))
	h.Write(n[:])
	for _, f := range s.Fields {
		h.WriteByte(byte(f))
	}
	for _, b := range []bool{s.IsMap, s.VMap, s.Exact} {
		if b {
			h.WriteByte(1)
		} else {
			h.WriteByte(0)
		}
	}
	for _, e := range s.Elems {
		h.Write(e.Key.AsSlice())
		h.Write(e.Val.AsSlice())
	}
	for _, r := range s.Ranges {
		h.Write(r.From)
		h.WriteByte(byte(len(r.To)))
		h.Write(r.To)
		binary.LittleEndian.PutUint64(n[:], uint64(r.Verdict.Kind))
		h.Write(n[:])
		h.WriteString(r.Verdict.Chain)
		h.WriteByte(0)
	}
	return h.Sum64()
}

func sameSum(sums map[string]uint64, name string, sum uint64) bool {
	s, ok := sums[name]
	return ok && s == sum
}

// fpSeed is fixed for the process: fingerprints are only compared within
// one engine.
var fpSeed = maphash.MakeSeed()
