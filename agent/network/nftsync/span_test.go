package nftsync

import (
	"bytes"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// TestSpanGivesBackTheKeys: what the engine remembers of an element (its
// ID and span) gives back the key and key end a deletion names, whatever
// bytes the keys hold (the separators too), for range, exact and plain
// elements.
func TestSpanGivesBackTheKeys(t *testing.T) {
	for _, e := range []nftables.SetElement{
		{Key: []byte("br-1\x00\x00\x00\x00-=\x0a\x01"), KeyEnd: []byte("br-1\x00\x00\x00\x00=-\x0a\xff"), VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: "c-1"}},
		{Key: []byte("=-=-"), VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: "x"}},
		{Key: []byte{192, 0, 2, 1}, Val: []byte{10, 0, 0, 1}},
		{Key: []byte{192, 0, 2, 1}},
	} {
		id := elemID(e, false)
		got := spanOf(e).keys(id)
		if !bytes.Equal(got.Key, e.Key) || !bytes.Equal(got.KeyEnd, e.KeyEnd) || (e.KeyEnd == nil) != (got.KeyEnd == nil) {
			t.Errorf("element %q-%q: got back %q-%q", e.Key, e.KeyEnd, got.Key, got.KeyEnd)
		}
	}
}
