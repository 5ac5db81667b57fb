// Package cloudstack builds a vpcflow blueprint from Apache CloudStack's
// API: a small signed-request client (client.go), the CloudStack objects
// vpcflow reads (types.go), the builder that turns them plus a base file
// into a *flows.Blueprint validated exactly like a blueprint file
// (build.go, yaml.go), and a Source the controller polls (source.go).
//
// The secret key never leaves the client: it is not logged, not part of
// any error, and neither is a request URL (which carries the signature).
package cloudstack

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Config configures a Client. Zero values take the documented defaults.
type Config struct {
	// URL is the API endpoint, e.g. https://cloud.example.com/client/api.
	URL string
	// APIKey and SecretKey are the CloudStack user's key pair (a root admin,
	// or a domain admin that sees every VPC vpcflow enforces).
	APIKey    string
	SecretKey string
	// ZoneID, when set, restricts every list call to one zone (zoneid=).
	ZoneID string
	// PageSize is the pagesize of list calls (default 500).
	PageSize int
	// Timeout bounds one HTTP request (one page) (default 30s).
	Timeout time.Duration
	// HTTP is the HTTP client (default: a client without its own timeout;
	// Timeout and the caller's context bound each request).
	HTTP *http.Client
}

// DefaultPageSize is the default pagesize of list calls.
const DefaultPageSize = 500

// DefaultTimeout is the default bound of one request.
const DefaultTimeout = 30 * time.Second

// maxBody bounds one response body (a page of 500 VMs is well under 4 MiB).
const maxBody = 64 << 20

// Validate checks the configuration without contacting CloudStack.
func (c Config) Validate() error {
	var errs []string
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		errs = append(errs, "--cloudstack-url is missing: give the API endpoint, e.g. https://cloud.example.com/client/api")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		errs = append(errs, fmt.Sprintf("--cloudstack-url %q is not an http(s) URL: write e.g. https://cloud.example.com/client/api", redactURL(c.URL)))
	case u.RawQuery != "":
		errs = append(errs, "--cloudstack-url must not carry a query string: give keys with --api-key/--secret-key (or their -file flags, or CLOUDSTACK_API_KEY/CLOUDSTACK_SECRET_KEY)")
	}
	if c.APIKey == "" {
		errs = append(errs, "the CloudStack API key is missing: set --api-key-file, CLOUDSTACK_API_KEY or --api-key")
	}
	if c.SecretKey == "" {
		errs = append(errs, "the CloudStack secret key is missing: set --secret-key-file, CLOUDSTACK_SECRET_KEY or --secret-key")
	}
	if c.PageSize < 0 {
		errs = append(errs, fmt.Sprintf("page size %d is negative: use 1..500 (0 = %d)", c.PageSize, DefaultPageSize))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Sprintf("timeout %s is negative", c.Timeout))
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "\n"))
	}
	return nil
}

// Client calls CloudStack's API with signed GET requests. It is safe for
// concurrent use.
type Client struct {
	cfg  Config
	http *http.Client
}

// NewClient validates cfg and returns a client.
func NewClient(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.PageSize == 0 {
		cfg.PageSize = DefaultPageSize
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	hc := cfg.HTTP
	if hc == nil {
		hc = &http.Client{}
	}
	return &Client{cfg: cfg, http: hc}, nil
}

// Endpoint is the API URL (no credentials), for logs and status.
func (c *Client) Endpoint() string { return redactURL(c.cfg.URL) }

// APIError is an error answer of CloudStack: its HTTP status and, when the
// body carried one, CloudStack's errorcode and errortext.
type APIError struct {
	Command    string
	Page       int
	HTTPStatus int
	ErrorCode  int
	ErrorText  string
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "cloudstack %s page %d: HTTP %d", e.Command, e.Page, e.HTTPStatus)
	if e.ErrorCode != 0 {
		fmt.Fprintf(&b, ", errorcode %d", e.ErrorCode)
	}
	if e.ErrorText != "" {
		fmt.Fprintf(&b, ": %s", e.ErrorText)
	}
	switch e.ErrorCode {
	case 401:
		b.WriteString(" (check the API and secret keys and that the management server's clock is right)")
	case 431:
		b.WriteString(" (a parameter was refused: check --cloudstack-zone)")
	case 432:
		b.WriteString(" (the API command is not available to this account: use a root admin key)")
	}
	return b.String()
}

// PartialError reports a list that ended before CloudStack's own count:
// a page was missing or short, or the objects changed while paging.
type PartialError struct {
	Command   string
	Got, Want int
	Detail    string
}

func (e *PartialError) Error() string {
	return fmt.Sprintf("cloudstack %s: partial list: got %d of the %d objects CloudStack counted (%s): the result is incomplete and was not used", e.Command, e.Got, e.Want, e.Detail)
}

// sign returns the signed query string of params (apiKey and
// response=json are added). Per CloudStack's API guide: sort the pairs by
// lowercased key, URL-encode each value (spaces as %20), lowercase the
// whole command string, HMAC-SHA1 it with the secret key, base64 the
// digest, and send it URL-encoded as signature.
func (c *Client) sign(params map[string]string) string {
	all := make(map[string]string, len(params)+2)
	for k, v := range params {
		all[k] = v
	}
	all["apiKey"] = c.cfg.APIKey
	all["response"] = "json"
	keys := make([]string, 0, len(all))
	for k := range all {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return strings.ToLower(keys[i]) < strings.ToLower(keys[j]) })
	pairs := make([]string, len(keys))
	for i, k := range keys {
		pairs[i] = k + "=" + encodeValue(all[k])
	}
	query := strings.Join(pairs, "&")
	return query + "&signature=" + encodeValue(Signature(c.cfg.SecretKey, query))
}

// Signature is CloudStack's request signature of an encoded command string
// ("k=v&k=v" with values URL-encoded, pairs sorted by lowercased key).
func Signature(secret, query string) string {
	m := hmac.New(sha1.New, []byte(secret))
	m.Write([]byte(strings.ToLower(query)))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// encodeValue URL-encodes like the management server does when it checks
// a signature (java.net.URLEncoder with "+" as "%20"): letters, digits and
// ".-*_" stay, everything else is %XX.
func encodeValue(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9', ch == '.', ch == '-', ch == '*', ch == '_':
			b.WriteByte(ch)
		default:
			fmt.Fprintf(&b, "%%%02X", ch)
		}
	}
	return b.String()
}

// redactURL drops any query, fragment and user info from a URL.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		if i := strings.IndexAny(s, "?#"); i >= 0 {
			return s[:i]
		}
		return s
	}
	u.RawQuery, u.Fragment, u.User = "", "", nil
	return u.String()
}

// call makes one signed request and returns the object inside
// "<command>response" (CloudStack wraps every answer in it).
func (c *Client) call(ctx context.Context, command string, page int, params map[string]string) (json.RawMessage, error) {
	p := map[string]string{"command": command}
	for k, v := range params {
		p[k] = v
	}
	rctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, c.cfg.URL+"?"+c.sign(p), nil)
	if err != nil {
		return nil, fmt.Errorf("cloudstack %s: bad request for %s: %v", command, c.Endpoint(), redactErr(err))
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return nil, fmt.Errorf("cloudstack %s page %d: cancelled: %v", command, page, ctx.Err())
		case rctx.Err() != nil:
			return nil, fmt.Errorf("cloudstack %s page %d: no answer from %s within %s (--cloudstack-timeout)", command, page, c.Endpoint(), c.cfg.Timeout)
		}
		return nil, fmt.Errorf("cloudstack %s page %d: %s: %v", command, page, c.Endpoint(), redactErr(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		if rctx.Err() != nil && ctx.Err() == nil {
			return nil, fmt.Errorf("cloudstack %s page %d: answer from %s not complete within %s (--cloudstack-timeout)", command, page, c.Endpoint(), c.cfg.Timeout)
		}
		return nil, fmt.Errorf("cloudstack %s page %d: reading the answer: %v", command, page, redactErr(err))
	}
	if len(body) > maxBody {
		return nil, fmt.Errorf("cloudstack %s page %d: answer larger than %d MiB: lower the page size", command, page, maxBody>>20)
	}
	inner, perr := unwrap(command, body)
	if resp.StatusCode != http.StatusOK {
		ae := &APIError{Command: command, Page: page, HTTPStatus: resp.StatusCode}
		var e struct {
			ErrorCode int    `json:"errorcode"`
			ErrorText string `json:"errortext"`
		}
		if perr == nil && json.Unmarshal(inner, &e) == nil {
			ae.ErrorCode, ae.ErrorText = e.ErrorCode, c.scrub(e.ErrorText)
		} else {
			ae.ErrorText = c.scrub(snippet(body))
		}
		return nil, ae
	}
	if perr != nil {
		return nil, fmt.Errorf("cloudstack %s page %d: %v", command, page, perr)
	}
	var e struct {
		ErrorCode int    `json:"errorcode"`
		ErrorText string `json:"errortext"`
	}
	if json.Unmarshal(inner, &e) == nil && e.ErrorCode != 0 {
		return nil, &APIError{Command: command, Page: page, HTTPStatus: resp.StatusCode, ErrorCode: e.ErrorCode, ErrorText: c.scrub(e.ErrorText)}
	}
	return inner, nil
}

// unwrap returns the "<command>response" object of a CloudStack answer.
func unwrap(command string, body []byte) (json.RawMessage, error) {
	var outer map[string]json.RawMessage
	if err := json.Unmarshal(body, &outer); err != nil {
		return nil, fmt.Errorf("answer is not CloudStack JSON (%v): %s", err, snippet(body))
	}
	key := strings.ToLower(command) + "response"
	for k, v := range outer {
		if strings.ToLower(k) == key {
			return v, nil
		}
	}
	return nil, fmt.Errorf("answer has no %q object: %s", key, snippet(body))
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return strconv.Quote(s)
}

// scrub removes the credentials from text that came from the server.
func (c *Client) scrub(s string) string {
	for _, secret := range []string{c.cfg.SecretKey, c.cfg.APIKey} {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, "[redacted]")
		}
	}
	return s
}

// redactErr strips the request URL (it carries the signature) from an
// error of net/http.
func redactErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// list fetches every page of a list command, where CloudStack names the
// array field item ("host", "vpc", ...). It stops when it has collected
// CloudStack's count; an empty page before that, more objects than
// counted, a count that changes or an object listed twice is a
// *PartialError.
func list[T any](ctx context.Context, c *Client, command, item string, params map[string]string, idOf func(*T) string) ([]T, error) {
	var all []T
	seen := map[string]bool{}
	count := -1
	for page := 1; ; page++ {
		p := map[string]string{"page": strconv.Itoa(page), "pagesize": strconv.Itoa(c.cfg.PageSize)}
		for k, v := range params {
			p[k] = v
		}
		if c.cfg.ZoneID != "" {
			p["zoneid"] = c.cfg.ZoneID
		}
		inner, err := c.call(ctx, command, page, p)
		if err != nil {
			return nil, err
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(inner, &fields); err != nil {
			return nil, fmt.Errorf("cloudstack %s page %d: answer is not an object: %v", command, page, err)
		}
		n := 0
		if raw, ok := fields["count"]; ok {
			if err := json.Unmarshal(raw, &n); err != nil {
				return nil, fmt.Errorf("cloudstack %s page %d: count is not a number: %s", command, page, raw)
			}
		}
		var items []T
		if raw, ok := fields[item]; ok {
			if err := json.Unmarshal(raw, &items); err != nil {
				return nil, fmt.Errorf("cloudstack %s page %d: %s: %v", command, page, item, err)
			}
		}
		if count < 0 {
			count = n
		} else if n != count && len(items) > 0 {
			return nil, &PartialError{Command: command, Got: len(all), Want: count, Detail: fmt.Sprintf("count changed from %d to %d on page %d while paging", count, n, page)}
		}
		if len(items) == 0 {
			if len(all) < count {
				return nil, &PartialError{Command: command, Got: len(all), Want: count, Detail: fmt.Sprintf("page %d is empty", page)}
			}
			return all, nil
		}
		for i := range items {
			id := idOf(&items[i])
			if seen[id] {
				return nil, &PartialError{Command: command, Got: len(all), Want: count, Detail: fmt.Sprintf("object %s appeared twice (objects changed while paging)", id)}
			}
			seen[id] = true
		}
		all = append(all, items...)
		if len(all) > count {
			return nil, &PartialError{Command: command, Got: len(all), Want: count, Detail: "more objects than counted (objects changed while paging)"}
		}
		if len(all) == count {
			return all, nil
		}
		// A page shorter than pagesize is not an error by itself: the
		// server caps pagesize (default.page.size). The next page holds
		// the rest, or is empty and ends the list short of count.
	}
}
