package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"time"

	"golang.org/x/net/netutil"

	"github.com/strata-infra/strata/coordinator/config"
	"github.com/strata-infra/strata/coordinator/tlsca"
)

// Server bounds: a client that trickles its request, or sits idle, holds a
// connection only this long; the plan long-poll's wait is in the handler,
// so WriteTimeout leaves room for it.
const (
	readTimeout  = 30 * time.Second
	writeTimeout = 5 * time.Minute
	idleTimeout  = 2 * time.Minute
	maxHeader    = 64 << 10
)

// apiTLS returns the API's TLS configuration: the operator's certificate,
// or one the coordinator issues from its own CA (made at first start). It
// logs the CA's fingerprint for operators to check what they copy.
func apiTLS(cfg *config.Config, log *slog.Logger) (*tls.Config, error) {
	certFile, keyFile, caFile := cfg.TLSCertFile, cfg.TLSKeyFile, cfg.TLSCAFile
	if certFile == "" {
		p, made, err := tlsca.Ensure(cfg.DataDir, certNames(cfg))
		if err != nil {
			return nil, fmt.Errorf("API certificate: %w", err)
		}
		certFile, keyFile, caFile = p.Cert, p.Key, p.CA
		if made {
			log.Info("API certificate issued", "cert", certFile, "names", certNames(cfg))
		}
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("API certificate: %w", err)
	}
	if caFile != "" {
		fp, err := tlsca.Fingerprint(caFile)
		if err != nil {
			return nil, fmt.Errorf("API CA: %w", err)
		}
		log.Info("API serves TLS; clients pin this CA", "ca", caFile, "sha256", fp)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}, nil
}

// certNames are the names the issued certificate covers: every listen
// address, the published API URL's host, the machine's name and loopback.
func certNames(cfg *config.Config) []string {
	names := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil {
		names = append(names, h)
	}
	for _, l := range cfg.Listen {
		if ap, err := netip.ParseAddrPort(l); err == nil && !ap.Addr().IsUnspecified() {
			names = append(names, ap.Addr().String())
		}
	}
	if u, err := url.Parse(cfg.APIURL); err == nil && u.Hostname() != "" {
		names = append(names, u.Hostname())
	}
	return append(names, cfg.TLSNames...)
}

// listenAPI opens one API listener, bounded to maxConns connections.
func listenAPI(addr string, maxConns int, tc *tls.Config) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	ln = netutil.LimitListener(ln, maxConns)
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	return ln, nil
}

func apiServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: readTimeout,
		WriteTimeout: writeTimeout, IdleTimeout: idleTimeout, MaxHeaderBytes: maxHeader}
}
