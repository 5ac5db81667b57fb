package cloudstack

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vpcflow/vpcflow/cloudstack/cstest"
)

const (
	testAPIKey = "test-api-key-AbC_123"
	testSecret = "test-secret-key-XyZ/456+="
)

func newTestClient(t *testing.T, srv *cstest.Server, mod func(*Config)) *Client {
	t.Helper()
	cfg := Config{URL: srv.API(), APIKey: testAPIKey, SecretKey: testSecret, PageSize: 3, Timeout: 2 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A known vector, computed independently (Python's hmac) from the API
// guide's procedure: sorted pairs, encoded values, lowercased, HMAC-SHA1,
// base64.
func TestSignatureKnownVector(t *testing.T) {
	q := "apiKey=abc-DEF_1&command=listHosts&keyword=a%20b%2Fc&response=json&type=Routing"
	if got, want := Signature("secret-key-123", q), "2h2bud36TZKOVocA5fuVmdhji+I="; got != want {
		t.Fatalf("Signature = %s, want %s", got, want)
	}
	c := &Client{cfg: Config{APIKey: "abc-DEF_1", SecretKey: "secret-key-123"}}
	got := c.sign(map[string]string{"command": "listHosts", "type": "Routing", "keyword": "a b/c"})
	if want := q + "&signature=2h2bud36TZKOVocA5fuVmdhji%2BI%3D"; got != want {
		t.Fatalf("sign =\n %s\nwant\n %s", got, want)
	}
}

func TestEncodeValue(t *testing.T) {
	for in, want := range map[string]string{"a b": "a%20b", "x/y=z&": "x%2Fy%3Dz%26", "A-z_0.9*": "A-z_0.9*", "~+": "%7E%2B", "é": "%C3%A9"} {
		if got := encodeValue(in); got != want {
			t.Errorf("encodeValue(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFetchPages(t *testing.T) {
	srv := cstest.New(t, "testdata/cloud", testAPIKey, testSecret)
	c := newTestClient(t, srv, nil)
	o, err := c.Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Accounts' objects plus every project's (projectid=-1): one project
	// VPC, tier and VM.
	if len(o.Hosts) != 4 || len(o.VPCs) != 3 || len(o.Networks) != 8 || len(o.VMs) != 13 {
		t.Fatalf("got %d hosts, %d VPCs, %d networks, %d VMs+routers; want 4, 3, 8, 13", len(o.Hosts), len(o.VPCs), len(o.Networks), len(o.VMs))
	}
	// 9 VMs at pagesize 3: exactly 3 pages (it stops at count, no 4th),
	// plus one page of project VMs; an empty project answer is one page.
	req := srv.Requests()
	if req["listVirtualMachines"] != 4 || req["listHosts"] != 2 || req["listRouters"] != 2 {
		t.Fatalf("requests per command %v: want listVirtualMachines 4, listHosts 2, listRouters 2", req)
	}
	var multi *VM
	for i := range o.VMs {
		if o.VMs[i].Name == "blue-multi" {
			multi = &o.VMs[i]
		}
	}
	if multi == nil || len(multi.NICs) != 2 || multi.NICs[1].DeviceID != nil || multi.NICs[1].MACAddress != "02:00:0b:01:02:0d" {
		t.Fatalf("blue-multi decoded as %+v", multi)
	}
}

// A server that caps the page size (default.page.size) answers shorter
// pages than asked for: not an error, the next page holds the rest.
func TestFetchCappedPageSize(t *testing.T) {
	srv := cstest.New(t, "testdata/cloud", testAPIKey, testSecret)
	srv.SetMaxPageSize(2)
	o, err := newTestClient(t, srv, nil).Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(o.VMs) != 13 {
		t.Fatalf("%d VMs+routers, want 13", len(o.VMs))
	}
	if n := srv.Requests()["listVirtualMachines"]; n != 6 {
		t.Fatalf("listVirtualMachines requests %d: want 5 pages of 2 + 1 project page", n)
	}
}

func TestFetchErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		fault   cstest.Fault
		command string
		page    int
		secret  string
		want    []string
		partial bool
		apiCode int
	}{
		{name: "http 500", fault: cstest.HTTP500, command: "listNetworks", page: 2, want: []string{"cloudstack listNetworks page 2: HTTP 500", "Internal Server Error"}},
		{name: "cloudstack error 431", fault: cstest.APIError, command: "listVirtualMachines", page: 2, want: []string{"HTTP 431, errorcode 431: Unable to execute API command listvirtualmachines", "check --cloudstack-zone"}, apiCode: 431},
		{name: "missing page", fault: cstest.EmptyPage, command: "listVirtualMachines", page: 2, want: []string{"partial list: got 3 of the 9", "page 2 is empty"}, partial: true},
		{name: "short count", fault: cstest.ShortCount, command: "listVirtualMachines", page: 1, want: []string{"partial list", "of the 10 objects"}, partial: true},
		{name: "slow", fault: cstest.Slow, command: "listRouters", page: 1, want: []string{"cloudstack listRouters page 1: no answer from http://", "within 200ms (--cloudstack-timeout)"}},
		{name: "bad secret", secret: "wrong-secret", want: []string{"cloudstack listHosts page 1: HTTP 401, errorcode 401: unable to verify user credentials", "check the API and secret keys"}, apiCode: 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := cstest.New(t, "testdata/cloud", testAPIKey, testSecret)
			srv.Inject(func(command string, page int) cstest.Fault {
				if command == tc.command && page == tc.page {
					return tc.fault
				}
				return cstest.None
			})
			c := newTestClient(t, srv, func(cfg *Config) {
				cfg.Timeout = 200 * time.Millisecond
				if tc.secret != "" {
					cfg.SecretKey = tc.secret
				}
			})
			start := time.Now()
			o, err := c.Fetch(context.Background())
			if err == nil {
				t.Fatalf("Fetch succeeded with %d VMs, want an error", len(o.VMs))
			}
			if o != nil {
				t.Fatalf("Fetch returned objects with its error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			var pe *PartialError
			if errors.As(err, &pe) != tc.partial {
				t.Errorf("error %T: PartialError = %v, want %v", err, !tc.partial, tc.partial)
			}
			var ae *APIError
			if tc.apiCode != 0 && (!errors.As(err, &ae) || ae.ErrorCode != tc.apiCode) {
				t.Errorf("error %#v: want an APIError with errorcode %d", err, tc.apiCode)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Fetch took %s", d)
			}
			assertNoSecrets(t, err.Error(), srv)
		})
	}
}

// assertNoSecrets fails if text holds the secret key, the API key or any
// signature the server received.
func assertNoSecrets(t *testing.T, text string, srv *cstest.Server) {
	t.Helper()
	for _, s := range append([]string{testSecret, testAPIKey, "wrong-secret"}, srv.Signatures()...) {
		if s != "" && strings.Contains(text, s) {
			t.Errorf("credential %q leaked into %q", s, text)
		}
	}
	if strings.Contains(text, "signature=") || strings.Contains(text, "apiKey=") {
		t.Errorf("a request query leaked into %q", text)
	}
}

func TestConfigValidate(t *testing.T) {
	err := Config{URL: "ftp://x?apiKey=k&secretkey=s"}.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range []string{"is not an http(s) URL", "API key is missing", "secret key is missing"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
	if strings.Contains(err.Error(), "secretkey=s") {
		t.Errorf("the URL's query leaked into %q", err)
	}
}
