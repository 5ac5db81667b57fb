package controller

// The HTTP API's safety rules (docs/security.md "The HTTP API"):
//
//   - GET never changes anything: GET /audit reads and reports drift, it
//     does not repair it. Repair happens in the drift check or on
//     POST /audit?repair=1.
//   - Mutating requests (POST /reload, POST /audit?repair=1) need a
//     credential: the bearer token of --http-token-file (compared in
//     constant time), or a client certificate verified against
//     --http-client-ca on a TLS listener. With no credential configured
//     they are refused (403, naming the flags that enable them): fail
//     closed. A request without a valid credential gets 401 and nothing
//     else.
//   - Work before authentication is bounded: headers (64 KiB, 5 s) and
//     bodies (64 KiB; no endpoint reads one) are limited for every request.
//   - --metrics serves /metrics alone on its own address, so a scraper
//     never reaches /audit or /reload.

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const (
	// maxAPIBody bounds a request body (no endpoint reads one).
	maxAPIBody = 64 << 10
	// maxAPIHeader bounds a request's header block.
	maxAPIHeader = 64 << 10
	// maxTokenFile bounds --http-token-file (and the CLI's --token-file).
	maxTokenFile = 4 << 10
	// minTokenLen is the shortest accepted bearer token.
	minTokenLen = 16
)

// apiServer wraps a handler with the pre-authentication bounds.
func apiServer(h http.Handler) *http.Server {
	// No ReadTimeout: it would also cancel a long audit's context; the
	// header timeout and the body bound are what an unauthenticated peer
	// can hold.
	return &http.Server{Handler: limitBody(h), ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: maxAPIHeader,
		IdleTimeout: 2 * time.Minute}
}

// limitBody refuses a declared body above maxAPIBody before any handler
// runs and caps what a handler could read of an undeclared one.
func limitBody(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > maxAPIBody {
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxAPIBody)
		h.ServeHTTP(w, r)
	})
}

// handleAudit serves GET /audit (read only) and POST /audit?repair=1
// (authenticated: reads, then asks the bridges with drift to reconcile).
func (c *Controller) handleAudit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	repair := q.Get("repair")
	var rep AuditReport
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if repair != "" {
			http.Error(w, "GET /audit only reads: repair with POST /audit?repair=1 (authenticated: vpcflow audit --repair --token-file FILE)", http.StatusMethodNotAllowed)
			return
		}
		rep = c.Audit(r.Context(), q.Get("host"))
	case http.MethodPost:
		if !c.authorize(w, r) {
			return
		}
		if repair != "1" {
			http.Error(w, "POST /audit needs repair=1 (GET /audit reads)", http.StatusBadRequest)
			return
		}
		rep = c.AuditRepair(r.Context(), q.Get("host"))
	default:
		http.Error(w, "GET (read) or POST ?repair=1 only", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(rep)
}

// authorize admits a mutating request or answers it: 403 when no
// credential is configured at all, 401 when the request carries no valid
// one.
func (c *Controller) authorize(w http.ResponseWriter, r *http.Request) bool {
	token := c.opts.HTTPToken
	certs := c.opts.HTTPTLS != nil && c.opts.HTTPTLS.ClientCAs != nil
	if token == "" && !certs {
		http.Error(w, "mutating requests are disabled: no API credential is configured; start the controller with --http-token-file FILE (a bearer token) or --http-client-ca FILE with --http-tls-cert and --http-tls-key (client certificates)", http.StatusForbidden)
		return false
	}
	if certs && r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.PeerCertificates) > 0 &&
		!slices.Contains(r.TLS.PeerCertificates[0].Subject.OrganizationalUnit, "switch") {
		return true
	}
	if token != "" {
		if got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && tokenEqual(got, token) {
			return true
		}
	}
	c.authFailures.note(c, r)
	w.Header().Set("WWW-Authenticate", `Bearer realm="vpcflow"`)
	http.Error(w, "unauthorized", http.StatusUnauthorized)
	return false
}

// tokenEqual compares in constant time (also in the length: both sides are
// hashed first).
func tokenEqual(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

// authLog logs refused API requests at most once per 10 s, with a count.
type authLog struct {
	mu     sync.Mutex
	last   time.Time
	missed int
	total  atomic.Uint64
}

func (l *authLog) note(c *Controller, r *http.Request) {
	l.total.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if time.Since(l.last) < 10*time.Second {
		l.missed++
		return
	}
	c.log.WithField("remote", r.RemoteAddr).WithField("path", r.URL.Path).WithField("refused_since_last_line", l.missed).
		Warn("API request without a valid credential refused (401)")
	l.last, l.missed = time.Now(), 0
}

// ReadTokenFile reads an API bearer token: one line, at least 16
// characters, in a file that is not readable or writable by others (the
// controller refuses to start otherwise).
func ReadTokenFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%s: not a regular file", path)
	}
	if m := st.Mode().Perm(); m&0o007 != 0 {
		return "", fmt.Errorf("%s: mode %04o lets every user read the API token: chmod 0640 %s (owner root, group vpcflow) or 0600", path, m, path)
	}
	if st.Size() > maxTokenFile {
		return "", fmt.Errorf("%s: %d bytes: an API token file holds one token (at most %d bytes)", path, st.Size(), maxTokenFile)
	}
	b := make([]byte, maxTokenFile+1)
	n, _ := f.Read(b)
	tok := strings.TrimSpace(string(b[:n]))
	if strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("%s: want one token on one line (no white space inside)", path)
	}
	if len(tok) < minTokenLen {
		return "", fmt.Errorf("%s: token shorter than %d characters: make one with head -c 32 /dev/urandom | base64 > %s", path, minTokenLen, path)
	}
	return tok, nil
}

// listenMetrics opens --metrics (nil when unset or "off").
func (c *Controller) listenMetrics() (net.Listener, error) {
	if c.opts.Metrics == "" || c.opts.Metrics == "off" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", c.opts.Metrics)
	if err != nil {
		return nil, fmt.Errorf("metrics listen %s: %w", c.opts.Metrics, err)
	}
	c.mu.Lock()
	c.metricsAddr = ln.Addr()
	c.mu.Unlock()
	return ln, nil
}

// metricsServer serves /metrics only (everything else is 404).
func (c *Controller) metricsServer() *http.Server {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(c.metrics.reg, promhttp.HandlerOpts{}))
	return apiServer(mux)
}

// MetricsAddr is the bound --metrics address (nil when off or before Run).
func (c *Controller) MetricsAddr() net.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.metricsAddr
}

// serveHTTP serves srv on ln until ctx ends.
func (c *Controller) serveHTTP(ctx context.Context, wg *sync.WaitGroup, srv *http.Server, ln net.Listener) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = srv.Serve(ln)
	}()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
}
