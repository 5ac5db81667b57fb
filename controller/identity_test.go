package controller

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vpcflow/vpcflow/pki"
)

// tlsFakeSwitch connects a fake switch for dpid over TLS with the PKI's
// certificate name; done closes when the controller hangs up.
func tlsFakeSwitch(t *testing.T, addr, pkiDir, name string, dpid uint64) (fs *ofFakeSwitch, done <-chan struct{}) {
	t.Helper()
	cfg, err := pki.ClientConfig(filepath.Join(pkiDir, name+".pem"), filepath.Join(pkiDir, name+".key"), pki.TrustFor(pkiDir, pki.Controller))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	fs = ofNewFakeSwitch(t, nc, dpid)
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		fs.serve()
	}()
	return fs, ch
}

// TestReloadRechecksCertificates: a switch certified as kvm1 holds datapath
// a1. A reload that gives a1 to kvm2 (and kvm1 another datapath id) closes
// that connection before anything of the new policy is written to it, and
// reports it in rejected[]; the same certificate cannot connect for a1
// again.
func TestReloadRechecksCertificates(t *testing.T) {
	pkiDir := filepath.Join(t.TempDir(), "pki")
	if err := pki.Init(pkiDir, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, _, err := pki.Sign(pkiDir, "controller", pki.Controller, []net.IP{net.ParseIP("127.0.0.1")}, time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"kvm1", "kvm2"} {
		if _, _, err := pki.Sign(pkiDir, n, pki.Switch, nil, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := pki.ServerConfig(filepath.Join(pkiDir, "controller.pem"), filepath.Join(pkiDir, "controller.key"), pki.TrustFor(pkiDir, pki.Switch))
	if err != nil {
		t.Fatal(err)
	}
	var bpPath string
	c, addr := hsTestController(t, func(o *Options) {
		o.Listen = "ssl:127.0.0.1:0"
		o.TLS = srv
		bpPath = o.BlueprintPath
	})
	fs, closed := tlsFakeSwitch(t, addr, pkiDir, "kvm1", 0xa1)
	ofWaitFor(t, 10*time.Second, "kvm1 reconciled over TLS", func() bool {
		_, _, commits, role := fs.snapshot()
		return role == OFRoleMaster && commits > 0
	})
	_, _, commitsBefore, _ := fs.snapshot()

	// Swap kvm1's and kvm2's datapath ids.
	bp, err := os.ReadFile(bpPath)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(bp), "revision: 1", "revision: 2", 1)
	s = strings.Replace(s, `"00000000000000a1"`, `"TMP"`, 1)
	s = strings.Replace(s, `"00000000000000a2"`, `"00000000000000a1"`, 1)
	s = strings.Replace(s, `"TMP"`, `"00000000000000a2"`, 1)
	if err := os.WriteFile(bpPath, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.Reload("test"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the connection certified for kvm1 is still open after a reload gave its datapath id a1 to kvm2")
	}
	if _, _, commits, _ := fs.snapshot(); commits != commitsBefore {
		t.Errorf("%d bundles of the new policy were committed over kvm1's connection", commits-commitsBefore)
	}
	hasReject := func(dpid, reason string) bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, r := range c.rejected {
			if r.DatapathID == dpid && strings.Contains(r.Reason, reason) {
				return true
			}
		}
		return false
	}
	if !hasReject("00000000000000a1", `after blueprint reload: certificate names "kvm1" but datapath id 00000000000000a1 belongs to host kvm2`) {
		t.Errorf("not reported in rejected[]: %+v", c.rejected)
	}
	// Reconnecting with the same certificate for a1 is refused at connect,
	// before PORT_DESC.
	fs2, closed2 := tlsFakeSwitch(t, addr, pkiDir, "kvm1", 0xa1)
	select {
	case <-closed2:
	case <-time.After(5 * time.Second):
		t.Fatal("kvm1's certificate connected for datapath a1, which now belongs to kvm2")
	}
	fs2.mu.Lock()
	for _, h := range fs2.received {
		if h.Type == OFPTMultipartReq {
			t.Errorf("PORT_DESC requested from a switch whose identity check failed")
		}
	}
	fs2.mu.Unlock()
	// kvm1's certificate for its new datapath id a2 is fine.
	fs3, _ := tlsFakeSwitch(t, addr, pkiDir, "kvm1", 0xa2)
	ofWaitFor(t, 10*time.Second, "kvm1 reconciled for its new datapath id", func() bool {
		_, _, commits, role := fs3.snapshot()
		return role == OFRoleMaster && commits > 0
	})
}
