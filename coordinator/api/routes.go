package api

import (
	"net/http"
	"sort"
)

// routeMux is the server's ServeMux that also remembers every pattern it
// serves, so a test can hold the OpenAPI document against the routes.
type routeMux struct {
	*http.ServeMux
	patterns []string
}

func (m *routeMux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.patterns = append(m.patterns, pattern)
	m.ServeMux.HandleFunc(pattern, h)
}

// Routes lists the "METHOD /path" patterns the server serves (the
// catch-all "/" left out), sorted.
func (s *Server) Routes() []string {
	var out []string
	for _, p := range s.mux.patterns {
		if p != "/" {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}
