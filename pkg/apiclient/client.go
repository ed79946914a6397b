// Package apiclient is the Go client of the coordinator API, shared by
// stratactl and the agent.
package apiclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/strata-infra/strata/pkg/api"
)

// Client talks to a coordinator: one of Endpoints, the one that last
// answered. Coordinators over one etcd are interchangeable; when the one
// in use cannot be reached the client moves on to the next.
type Client struct {
	Endpoint string // e.g. http://127.0.0.1:7070; the first of Endpoints
	// Endpoints are every coordinator's URL, Endpoint first (nil: Endpoint
	// alone).
	Endpoints []string
	Token     string
	HTTP      *http.Client
	// Storage makes Plan ask for the storage plan (every volume and
	// snapshot besides the host's own): for a storage controller's host.
	Storage bool
	// OnSwitch, when set, is told when the client leaves a coordinator it
	// could not reach for another that answered.
	OnSwitch func(from, to string, err error)

	cur atomic.Int32 // index into Endpoints of the one in use (start)
}

// New returns a client; the HTTP timeout leaves room for plan long-polls.
// endpoint may list several coordinators, separated by commas.
func New(endpoint, token string) *Client {
	eps := SplitEndpoints(endpoint)
	first := ""
	if len(eps) > 0 {
		first = eps[0]
	}
	return &Client{Endpoint: first, Endpoints: eps, Token: token, HTTP: &http.Client{Timeout: 2 * time.Minute}}
}

// SplitEndpoints splits a comma-separated list of coordinator URLs,
// dropping blanks and trailing slashes.
func SplitEndpoints(s string) []string {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimRight(strings.TrimSpace(e), "/"); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// Current is the endpoint the client uses now.
func (c *Client) Current() string {
	eps := c.endpoints()
	return eps[int(c.cur.Load())%len(eps)]
}

func (c *Client) endpoints() []string {
	if len(c.Endpoints) == 0 {
		return []string{c.Endpoint}
	}
	return c.Endpoints
}

// NewPinned returns a client that trusts only the CA certificates in
// caFile (PEM): the coordinator's own CA, pinned. An empty caFile trusts
// the system's roots. A plain http:// endpoint is refused unless its host
// is a loopback address, where the coordinator may serve without TLS.
//
// endpoint may list several coordinators, separated by commas: every one
// is checked the same way.
func NewPinned(endpoint, token, caFile string) (*Client, error) {
	c := New(endpoint, token)
	if len(c.Endpoints) == 0 {
		return nil, fmt.Errorf("coordinator endpoint %q: want https://host:port", endpoint)
	}
	plain := true
	for _, ep := range c.Endpoints {
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("coordinator endpoint %q: want https://host:port", ep)
		}
		if u.Scheme == "http" && !IsLoopback(u.Hostname()) {
			return nil, fmt.Errorf("coordinator endpoint %q: plain http only on a loopback address; use https", ep)
		}
		plain = plain && u.Scheme == "http"
	}
	if plain {
		return c, nil
	}
	tc, err := PinnedTLS(caFile)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	c.HTTP.Transport = tr
	return c, nil
}

// PinnedTLS is the client TLS configuration trusting only caFile's
// certificates (the system's roots when caFile is "").
func PinnedTLS(caFile string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return tc, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("coordinator CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("coordinator CA %q: no PEM certificate in it", caFile)
	}
	tc.RootCAs = pool
	return tc, nil
}

// IsLoopback says whether host (a name or an address) is loopback.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// Do sends a request with a JSON body (nil for none) and decodes a JSON
// answer into out (nil to discard). Non-2xx answers come back as *api.Error.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	return c.DoHeader(ctx, method, path, nil, in, out)
}

// DoHeader is Do with extra request headers (If-Match, say). A
// coordinator that cannot be reached is left for the next of Endpoints,
// within this call: any request that never reached it (the connection
// was refused), and a GET, PUT or DELETE whatever became of it (they are
// idempotent; a POST may have been acted on).
func (c *Client) DoHeader(ctx context.Context, method, path string, hdr http.Header, in, out any) error {
	var buf []byte
	if in != nil {
		var err error
		if buf, err = json.Marshal(in); err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
	}
	eps := c.endpoints()
	start := int(c.cur.Load()) % len(eps)
	var err, first error
	for i := range eps {
		n := (start + i) % len(eps)
		var answered bool
		answered, err = c.do(ctx, eps[n], method, path, hdr, buf, in != nil, out)
		if ctx.Err() != nil {
			return err
		}
		if answered && !unavailable(method, err) {
			// Stay with the coordinator that answered.
			if n != start && c.cur.CompareAndSwap(int32(start), int32(n)) && c.OnSwitch != nil {
				c.OnSwitch(eps[start], eps[n], first)
			}
			return err
		}
		if first == nil {
			first = err
		}
		if !answered && !retryable(method, err) {
			return err
		}
	}
	return err
}

// unavailable says whether an answer is a coordinator saying it cannot
// serve now (its store out of reach), to an idempotent request that
// another coordinator may serve.
func unavailable(method string, err error) bool {
	var ae *api.Error
	if !errors.As(err, &ae) {
		return false
	}
	switch ae.Code {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return idempotent(method)
	}
	return false
}

func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// retryable says whether a request that failed without an answer may go
// to another coordinator.
func retryable(method string, err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true // never reached the coordinator
	}
	return idempotent(method)
}

// do sends one request to endpoint; answered is true when the
// coordinator answered (whatever it said).
func (c *Client) do(ctx context.Context, endpoint, method, path string, hdr http.Header, buf []byte, hasBody bool, out any) (answered bool, err error) {
	var body io.Reader
	if hasBody {
		body = bytes.NewReader(buf)
	}
	req, err := http.NewRequestWithContext(ctx, method, endpoint+path, body)
	if err != nil {
		return true, err
	}
	if hasBody {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return false, fmt.Errorf("%s %s%s: %w", method, endpoint, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		// Cut off mid-answer: the coordinator died under it.
		return false, fmt.Errorf("%s %s%s: read answer: %w", method, endpoint, path, err)
	}
	if resp.StatusCode >= 300 {
		var eb api.ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error != nil {
			return true, eb.Error
		}
		return true, &api.Error{Code: resp.StatusCode, Message: strings.TrimSpace(string(data))}
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return true, fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return true, nil
}

// Plan long-polls host's plan after epoch since of history ("" before
// the first plan), waiting up to wait.
func (c *Client) Plan(ctx context.Context, host string, since uint64, history string, wait time.Duration) (api.Plan, error) {
	var p api.Plan
	q := url.Values{"since": {fmt.Sprint(since)}, "wait": {wait.String()}}
	if c.Storage {
		q.Set("storage", "true")
	}
	if history != "" {
		q.Set("history", history)
	}
	err := c.Do(ctx, http.MethodGet, "/v1/hosts/"+url.PathEscape(host)+"/plan?"+q.Encode(), nil, &p)
	return p, err
}

// Report posts a host's status report.
func (c *Client) Report(ctx context.Context, rep api.HostReport) error {
	return c.Do(ctx, http.MethodPost, "/v1/hosts/"+url.PathEscape(rep.Host)+"/status", rep, nil)
}

// ResourcePath is the URL path of a kind's collection (name "") or of one
// resource.
func ResourcePath(plural, project, name string) string {
	p := "/v1/" + plural
	if project != "" {
		p = "/v1/projects/" + url.PathEscape(project) + "/" + plural
	}
	if name != "" {
		p += "/" + url.PathEscape(name)
	}
	return p
}

// IfMatch is the header that makes a PUT apply only to the version read.
func IfMatch(epoch uint64) http.Header {
	return http.Header{"If-Match": {fmt.Sprintf("%q", fmt.Sprint(epoch))}}
}

// ModifyAttempts bounds how often Modify re-reads after a 412.
const ModifyAttempts = 8

// Modify is a read-modify-write of one resource that never overwrites a
// change it did not see: GET, edit the spec, PUT with If-Match on the
// version read; a 412 (someone wrote in between) reads again and re-runs
// edit on the new version, up to ModifyAttempts times.
func (c *Client) Modify(ctx context.Context, path string, edit func(r api.Resource) (json.RawMessage, error)) (api.PutResult, error) {
	var last error
	for range ModifyAttempts {
		var r api.Resource
		if err := c.Do(ctx, http.MethodGet, path, nil, &r); err != nil {
			return api.PutResult{}, err
		}
		spec, err := edit(r)
		if err != nil {
			return api.PutResult{}, err
		}
		var pr api.PutResult
		err = c.DoHeader(ctx, http.MethodPut, path, IfMatch(r.Epoch), api.ResourceRequest{Name: r.Name, Spec: spec}, &pr)
		var ae *api.Error
		if errors.As(err, &ae) && ae.Code == http.StatusPreconditionFailed {
			last = err
			continue
		}
		return pr, err
	}
	return api.PutResult{}, fmt.Errorf("%s kept changing under %d read-modify-write attempts: %w", path, ModifyAttempts, last)
}
