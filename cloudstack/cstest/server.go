// Package cstest is a fake CloudStack API server for tests: it serves
// recorded list responses (JSON files in CloudStack's response format, one
// per command) page by page, checks every request's signature, and can
// inject faults (HTTP 500, CloudStack error answers, missing or short
// pages, answers slower than the client's timeout).
package cstest

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Fault is an injected failure.
type Fault int

const (
	// None answers normally.
	None Fault = iota
	// HTTP500 answers 500 with a plain-text body.
	HTTP500
	// APIError answers HTTP 431 with CloudStack's error object (errorcode
	// 431, errortext).
	APIError
	// EmptyPage answers the page with the right count but no items (a
	// missing page).
	EmptyPage
	// ShortCount claims one object more than it serves.
	ShortCount
	// Slow never answers: it blocks until the client gives up.
	Slow
)

type list struct {
	key, item string // "listhostsresponse", "host"
	items     []json.RawMessage
}

// Server is the fake API. Its URL is Server.URL + "/client/api".
type Server struct {
	*httptest.Server
	t              testing.TB
	apiKey, secret string

	mu         sync.Mutex
	lists      map[string]*list // lowercased command -> list
	fault      func(command string, page int) Fault
	requests   map[string]int
	queries    map[string]url.Values // the last request of each command
	signatures []string
	release    chan struct{}
	maxPage    int
}

// SetMaxPageSize caps the page size like the management server's
// default.page.size (0 = no cap).
func (s *Server) SetMaxPageSize(n int) {
	s.mu.Lock()
	s.maxPage = n
	s.mu.Unlock()
}

// New serves the fixtures <dir>/<command>.json, each holding one
// CloudStack list answer ({"listhostsresponse": {"count": N, "host": [...]}}).
// A request with projectid=-1 (every project's objects) is answered from
// <dir>/<command>.projects.json, or with an empty list.
func New(t testing.TB, dir, apiKey, secret string) *Server {
	s := &Server{t: t, apiKey: apiKey, secret: secret, lists: map[string]*list{}, requests: map[string]int{}, queries: map[string]url.Values{}, release: make(chan struct{})}
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("cstest: no fixtures in %s (%v)", dir, err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var outer map[string]map[string]json.RawMessage
		if err := json.Unmarshal(data, &outer); err != nil || len(outer) != 1 {
			t.Fatalf("cstest: %s: want one {\"<command>response\": {...}} object: %v", f, err)
		}
		for key, inner := range outer {
			l := &list{key: key}
			for k, v := range inner {
				if k == "count" {
					continue
				}
				l.item = k
				if err := json.Unmarshal(v, &l.items); err != nil {
					t.Fatalf("cstest: %s: %s is not an array: %v", f, k, err)
				}
			}
			cmd := strings.ToLower(strings.TrimSuffix(filepath.Base(f), ".json"))
			s.lists[cmd] = l
		}
	}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(func() {
		close(s.release)
		s.Server.Close()
	})
	return s
}

// API is the endpoint URL to give the client.
func (s *Server) API() string { return s.URL + "/client/api" }

// Inject sets the fault function (nil = none). It is called for every
// request with the command (as sent) and the page.
func (s *Server) Inject(f func(command string, page int) Fault) {
	s.mu.Lock()
	s.fault = f
	s.mu.Unlock()
}

// Remove deletes the objects whose "id" is id from command's list.
func (s *Server) Remove(command, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.lists[strings.ToLower(command)]
	kept := l.items[:0]
	for _, it := range l.items {
		var o struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(it, &o)
		if o.ID != id {
			kept = append(kept, it)
		}
	}
	l.items = kept
}

// Edit rewrites the object whose "id" is id in command's list.
func (s *Server) Edit(command, id string, edit func(obj map[string]any)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.lists[strings.ToLower(command)]
	for i, it := range l.items {
		var o map[string]any
		if err := json.Unmarshal(it, &o); err != nil {
			s.t.Fatal(err)
		}
		if o["id"] == id {
			edit(o)
			b, _ := json.Marshal(o)
			l.items[i] = b
			return
		}
	}
	s.t.Fatalf("cstest: %s has no object %s", command, id)
}

// Requests returns how many requests each command got.
func (s *Server) Requests() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for k, v := range s.requests {
		out[k] = v
	}
	return out
}

// LastQuery returns the parameters of command's last request (nil if none).
func (s *Server) LastQuery(command string) url.Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[command]
}

// Signatures returns every signature received (to check they never leak).
func (s *Server) Signatures() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.signatures...)
}

// expectedSignature computes CloudStack's signature of a request the way
// the management server checks it, independently of the client code.
func (s *Server) expectedSignature(q url.Values) string {
	keys := make([]string, 0, len(q))
	for k := range q {
		if k != "signature" {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return strings.ToLower(keys[i]) < strings.ToLower(keys[j]) })
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = strings.ToLower(k + "=" + strings.ReplaceAll(url.QueryEscape(q.Get(k)), "+", "%20"))
	}
	m := hmac.New(sha1.New, []byte(s.secret))
	m.Write([]byte(strings.Join(parts, "&")))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	command := q.Get("command")
	key := strings.ToLower(command) + "response"
	apiErr := func(status, code int, text string) {
		writeJSON(w, status, map[string]any{key: map[string]any{"uuidList": []string{}, "errorcode": code, "cserrorcode": 9999, "errortext": text}})
	}
	if r.URL.Path != "/client/api" {
		http.NotFound(w, r)
		return
	}
	s.mu.Lock()
	s.requests[command]++
	s.queries[command] = q
	s.signatures = append(s.signatures, q.Get("signature"))
	fault := s.fault
	l := s.lists[strings.ToLower(command)]
	if q.Get("projectid") == "-1" && l != nil {
		l = s.lists[strings.ToLower(command)+".projects"]
		if l == nil {
			l = &list{key: key}
		}
	}
	s.mu.Unlock()
	if q.Get("apiKey") != s.apiKey || q.Get("signature") != s.expectedSignature(q) || q.Get("response") != "json" {
		apiErr(401, 401, "unable to verify user credentials and/or request signature")
		return
	}
	if l == nil {
		apiErr(432, 432, "The given command does not exist or it is not available for user")
		return
	}
	page, _ := strconv.Atoi(q.Get("page"))
	size, _ := strconv.Atoi(q.Get("pagesize"))
	if page < 1 || size < 1 {
		apiErr(431, 431, fmt.Sprintf("Unable to execute API command %s due to invalid value: page and pagesize are required here", strings.ToLower(command)))
		return
	}
	f := None
	if fault != nil {
		f = fault(command, page)
	}
	switch f {
	case HTTP500:
		http.Error(w, "Internal Server Error", http.StatusInternalServerError)
		return
	case APIError:
		apiErr(431, 431, fmt.Sprintf("Unable to execute API command %s due to invalid value. Invalid parameter zoneid value=bogus due to incorrect long value format, or entity does not exist", strings.ToLower(command)))
		return
	case Slow:
		select {
		case <-r.Context().Done():
		case <-s.release:
		}
		return
	}
	s.mu.Lock()
	items := append([]json.RawMessage(nil), l.items...)
	if s.maxPage > 0 && size > s.maxPage {
		size = s.maxPage
	}
	s.mu.Unlock()
	count := len(items)
	lo, hi := (page-1)*size, page*size
	lo, hi = min(lo, count), min(hi, count)
	pageItems := items[lo:hi]
	switch f {
	case EmptyPage:
		pageItems = nil
	case ShortCount:
		count++
	}
	inner := map[string]any{}
	if count > 0 {
		// CloudStack leaves count and the array out of an empty answer.
		inner["count"] = count
	}
	if len(pageItems) > 0 {
		inner[l.item] = pageItems
	}
	writeJSON(w, http.StatusOK, map[string]any{key: inner})
}
