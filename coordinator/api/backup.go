package api

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// backup streams a consistent copy of the store (one bbolt read
// transaction; commits go on meanwhile). Admin only: it holds every
// token hash and every spec. The answer's X-Strata-Epoch and
// X-Strata-History say what the copy holds.
func (s *Server) backup(w http.ResponseWriter, r *http.Request) {
	if e := requireAdmin(r); e != nil {
		writeError(w, e)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="strata-%s.db"`, time.Now().UTC().Format("20060102T150405Z")))
	w.Header().Set("X-Strata-History", s.store.History())
	// The epoch is known only inside the read transaction: send it as a
	// trailer too, the copy's own meta is the authority.
	w.Header().Set("Trailer", "X-Strata-Epoch")
	epoch, err := s.store.Backup(w)
	if err != nil {
		// Headers are gone; a broken body is what the client sees.
		s.log.Error("backup failed", "err", err)
		panic(http.ErrAbortHandler)
	}
	w.Header().Set("X-Strata-Epoch", strconv.FormatUint(epoch, 10))
	s.log.Info("backup served", "epoch", epoch, actor(r))
}
