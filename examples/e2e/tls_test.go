package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vpcflow/vpcflow/examples/lab"
	"github.com/vpcflow/vpcflow/flows"
)

// rogueSwitchPy speaks just enough OpenFlow 1.3 to claim a datapath id:
// HELLO, FEATURES_REPLY, an empty PORT_DESC reply, echo replies. It prints
// "closed" when the controller hangs up (refused) or "open" if the
// connection is still up after ROGUE_HOLD seconds (default 6).
const rogueSwitchPy = `
import os, socket, ssl, struct, sys, time
host, port, dpid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3], 16)
cert, key, ca = (sys.argv[4:7] + [None, None, None])[:3]
s = socket.create_connection((host, port), timeout=5)
if cert is not None or (len(sys.argv) > 4 and sys.argv[4] == "tls-nocert"):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if cert not in (None, "tls-nocert"):
        ctx.load_cert_chain(cert, key)
    try:
        s = ctx.wrap_socket(s)
    except Exception as e:
        print("closed (tls: %s)" % e); sys.exit(0)
def send(t, xid, body=b""):
    s.sendall(struct.pack("!BBHI", 4, t, 8 + len(body), xid) + body)
try:
    send(0, 1)
except Exception as e:
    print("closed (%s)" % e); sys.exit(0)
deadline = time.time() + float(os.environ.get("ROGUE_HOLD", "6"))
buf = b""
try:
    while time.time() < deadline:
        s.settimeout(max(0.1, deadline - time.time()))
        d = s.recv(65536)
        if not d:
            print("closed"); sys.exit(0)
        buf += d
        while len(buf) >= 8:
            v, t, l, xid = struct.unpack("!BBHI", buf[:8])
            if len(buf) < l: break
            msg, buf = buf[:l], buf[l:]
            if t == 5:   # FEATURES_REQUEST
                send(6, xid, struct.pack("!QIBBHII", dpid, 0, 254, 0, 0, 0, 0))
            elif t == 18:  # MULTIPART_REQUEST (port desc)
                mtype = struct.unpack("!H", msg[8:10])[0]
                send(19, xid, struct.pack("!HH4x", mtype, 0))
            elif t == 2:   # ECHO_REQUEST
                send(3, xid, msg[8:])
except (socket.timeout, TimeoutError):
    pass
except Exception as e:
    print("closed (%s)" % e); sys.exit(0)
print("open")
`

// TestTLSLab runs the whole lab on mutual TLS with separate controller and
// switch CAs: every switch authenticates with a switch certificate naming
// its host, the controller with a controller certificate; switches without
// a valid certificate, with a controller's certificate, with a certificate
// naming another host, or claiming a connected datapath id from another
// address get no connection; and a connection whose certificate a reload
// no longer matches (its datapath id given to a new host) is closed.
func TestTLSLab(t *testing.T) {
	skipIfDisabled(t)
	dir := filepath.Join(t.TempDir(), "lab")
	pkiDir := filepath.Join(filepath.Dir(dir), "pki")
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(vpcflowBin, args...).CombinedOutput(); err != nil {
			t.Fatalf("vpcflow %v: %v\n%s", args, err, out)
		}
	}
	run("pki", "init", "--dir", pkiDir)
	for _, n := range []string{"kvm1", "kvm2", "kvm3", "kvm4"} {
		run("pki", "sign", "--dir", pkiDir, "--type", "switch", "--name", n)
	}
	run("pki", "sign", "--dir", pkiDir, "--type", "controller", "--name", "controller", "--ip", "192.0.2.250")
	foreign := filepath.Join(filepath.Dir(dir), "foreign-pki")
	run("pki", "init", "--dir", foreign)
	run("pki", "sign", "--dir", foreign, "--type", "switch", "--name", "kvm1")
	controllerCA := filepath.Join(pkiDir, "controllerca", "ca.pem") // switches trust it
	switchCA := filepath.Join(pkiDir, "switchca", "ca.pem")         // the controller trusts it

	bp := demoBlueprint(t, func(s string) string {
		return strings.Replace(s, "controllers: [tcp:192.0.2.250:6653]", "controllers: [ssl:192.0.2.250:6653]", 1)
	})
	e := startEnvWith(t, bp, dir, func(l *lab.Lab, host string) error {
		p := func(f string) string { return filepath.Join(pkiDir, f) }
		if _, err := l.OVS(context.Background(), host, "ovs-vsctl", "set-ssl", p(host+".key"), p(host+".pem"), controllerCA); err != nil {
			return err
		}
		h := l.Blueprint().HostByName(host)
		return lab.DefaultProvision(context.Background(), l, h)
	})
	e.startController("--listen", "ssl:192.0.2.250:6653",
		"--tls-cert", filepath.Join(pkiDir, "controller.pem"), "--tls-key", filepath.Join(pkiDir, "controller.key"),
		"--tls-ca", switchCA)
	start := time.Now()
	if _, err := e.lab.WaitConverged(e.ctx, 60*time.Second, 0); err != nil {
		t.Fatal(err)
	}
	t.Logf("TLS lab converged %s after controller start", time.Since(start).Round(time.Millisecond))
	e.pingOK("blue-web-1", "10.10.1.12", 10*time.Second)
	checkMatrix(t, e)
	for _, h := range e.bp.Hosts {
		out, _ := e.lab.OVS(e.ctx, h.Name, "ovs-vsctl", "--columns=target", "list", "controller")
		if !strings.Contains(out, "ssl:192.0.2.250:6653") {
			t.Fatalf("%s controller target is not ssl: %s", h.Name, out)
		}
	}

	script := filepath.Join(filepath.Dir(dir), "rogue_switch.py")
	if err := os.WriteFile(script, []byte(rogueSwitchPy), 0o644); err != nil {
		t.Fatal(err)
	}
	rogueHold := func(hold, dpid string, args ...string) string {
		argv := append([]string{"/usr/bin/env", "ROGUE_HOLD=" + hold, "/usr/bin/python3", script, "192.0.2.250", "6653", dpid}, args...)
		out, _ := e.lab.Exec(e.ctx, e.lab.RogueNS(), argv...)
		return strings.TrimSpace(out)
	}
	rogue := func(dpid string, args ...string) string { return rogueHold("6", dpid, args...) }
	p := func(d, f string) string { return filepath.Join(d, f) }
	cases := []struct {
		name, dpid string
		args       []string
		reason     string
	}{
		{"no certificate", "00000000000000f1", []string{"tls-nocert"}, "tls handshake failed"},
		{"certificate from a foreign CA", "00000000000000f2", []string{p(foreign, "kvm1.pem"), p(foreign, "kvm1.key"), p(foreign, "controllerca/ca.pem")}, "tls handshake failed"},
		{"the controller's certificate presented by a switch", "00000000000000f3", []string{p(pkiDir, "controller.pem"), p(pkiDir, "controller.key"), controllerCA}, "tls handshake failed"},
		{"valid certificate naming another host", "00000000000000a1", []string{p(pkiDir, "kvm2.pem"), p(pkiDir, "kvm2.key"), controllerCA}, `certificate names "kvm2"`},
		{"kvm1's own certificate from another address", "00000000000000a1", []string{p(pkiDir, "kvm1.pem"), p(pkiDir, "kvm1.key"), controllerCA}, "already connected"},
	}
	for _, tc := range cases {
		out := rogue(tc.dpid, tc.args...)
		if !strings.HasPrefix(out, "closed") {
			t.Errorf("%s: rogue switch kept its connection (%q)", tc.name, out)
		}
		eventually(t, 5*time.Second, tc.name+": reported in /status", func() (bool, string) {
			st := e.status()
			for _, r := range st.Rejected {
				if strings.HasPrefix(r.Remote, lab.RogueAddr+":") && strings.Contains(r.Reason, tc.reason) {
					return true, ""
				}
			}
			return false, fmt.Sprintf("%+v", st.Rejected)
		})
	}
	// A reload that gives a datapath id to a new host closes a connection
	// certified for another host that held it: kvm4 (not in the blueprint)
	// connects as datapath b5, which is unknown (no flows); then kvm5 is
	// added with datapath b5.
	held := make(chan string, 1)
	go func() {
		held <- rogueHold("30", "00000000000000b5", p(pkiDir, "kvm4.pem"), p(pkiDir, "kvm4.key"), controllerCA)
	}()
	eventually(t, 10*time.Second, "kvm4's certificate connected as unknown datapath b5", func() (bool, string) {
		st := e.status()
		for _, b := range st.Bridges {
			if b.DatapathID == "00000000000000b5" && b.Connected && !b.Known {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", st.Bridges)
	})
	grown := strings.Replace(readFile(e.bpPath), "revision: 1", "revision: 2", 1)
	grown = strings.Replace(grown, "\nvpcs:", "\n  - name: kvm5\n    datapath_id: \"00000000000000b5\"\n    tunnel_ip: 192.0.2.15\n    uplink: eth0\nvpcs:", 1)
	if err := os.WriteFile(e.bpPath, []byte(grown), 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case out := <-held:
		if !strings.HasPrefix(out, "closed") {
			t.Errorf("reload adding kvm5 (datapath b5): the connection certified for kvm4 kept it (%q)", out)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("rogue switch did not finish")
	}
	eventually(t, 5*time.Second, "reload refusal reported in /status", func() (bool, string) {
		st := e.status()
		if st.Revision != 2 {
			return false, fmt.Sprintf("revision %d", st.Revision)
		}
		for _, r := range st.Rejected {
			if r.DatapathID == "00000000000000b5" && strings.Contains(r.Reason, `after blueprint reload: certificate names "kvm4" but datapath id 00000000000000b5 belongs to host kvm5`) {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", st.Rejected)
	})
	// kvm5 has no switch now; the lab's bridges converge on revision 2.
	eventually(t, 60*time.Second, "kvm1..kvm3 converged on revision 2", func() (bool, string) {
		for _, b := range e.status().Bridges {
			if b.Host != "kvm5" && b.Known && (!b.Connected || !b.Converged || b.Revision != 2) {
				return false, fmt.Sprintf("%+v", b)
			}
		}
		return true, ""
	})

	// The genuine bridges were never disturbed.
	st := e.status()
	for _, b := range st.Bridges {
		if b.Host == "kvm5" {
			continue
		}
		if b.Known && (!b.Connected || !b.Converged) {
			t.Errorf("%s disturbed by the rogue connections: %+v", b.Host, b)
		}
		if b.DatapathID == "00000000000000a1" && strings.HasPrefix(b.Remote, lab.RogueAddr) {
			t.Errorf("kvm1's datapath is now served from the rogue address %s", b.Remote)
		}
	}
	_ = flows.TunnelPortVXLAN
}
