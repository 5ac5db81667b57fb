package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vpcflow/vpcflow/flows"
)

// fakeEnv is a DoctorEnv over maps. Missing entries are os.ErrNotExist.
type fakeEnv struct {
	mu        sync.Mutex
	files     map[string]string
	dirs      map[string][]string
	links     map[string]string
	cmds      map[string]string // "name arg..." -> stdout
	cmdErrs   map[string]error
	addrs     map[string][]netip.Prefix
	kernel    []string
	kernelErr error
	http      map[string]string
	httpErr   error
	// states are returned in turn by ReadOVSDB; the last one repeats.
	states []*OVSDBState
	dbErr  error
	reads  int
}

func (f *fakeEnv) ReadFile(p string) ([]byte, error) {
	if s, ok := f.files[p]; ok {
		return []byte(s), nil
	}
	return nil, &os.PathError{Op: "open", Path: p, Err: os.ErrNotExist}
}

func (f *fakeEnv) ReadDir(p string) ([]string, error) {
	if d, ok := f.dirs[p]; ok {
		return d, nil
	}
	return nil, &os.PathError{Op: "open", Path: p, Err: os.ErrNotExist}
}

func (f *fakeEnv) Readlink(p string) (string, error) {
	if l, ok := f.links[p]; ok {
		return l, nil
	}
	return "", &os.PathError{Op: "readlink", Path: p, Err: os.ErrNotExist}
}

func (f *fakeEnv) Run(_ context.Context, _ []string, name string, args ...string) (string, error) {
	key := strings.Join(append([]string{name}, args...), " ")
	if err, ok := f.cmdErrs[key]; ok {
		return "", err
	}
	if out, ok := f.cmds[key]; ok {
		return out, nil
	}
	return "", fmt.Errorf("%s: %w", name, exec.ErrNotFound)
}

func (f *fakeEnv) InterfaceAddrs(name string) ([]netip.Prefix, error) {
	if a, ok := f.addrs[name]; ok {
		return a, nil
	}
	return nil, fmt.Errorf("route ip+net: no such network interface %s", name)
}

func (f *fakeEnv) KernelDatapaths() ([]string, error) { return f.kernel, f.kernelErr }

func (f *fakeEnv) HTTPGet(_ context.Context, url string) ([]byte, error) {
	if f.httpErr != nil {
		return nil, f.httpErr
	}
	if b, ok := f.http[url]; ok {
		return []byte(b), nil
	}
	return nil, fmt.Errorf("dial tcp: connection refused")
}

func (f *fakeEnv) ReadOVSDB(context.Context, string, string) (*OVSDBState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dbErr != nil {
		return nil, f.dbErr
	}
	i := min(f.reads, len(f.states)-1)
	f.reads++
	return f.states[i], nil
}

const procNetHeader = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"

// tcpLine is a /proc/net/tcp line for a listening socket.
func tcpLine(hexAddr string, port int, inode string) string {
	return fmt.Sprintf("   0: %s:%04X 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 %s 1 0000000000000000 100 0 0 10 0\n", hexAddr, port, inode)
}

const testBlueprint = `version: 1
encapsulation: vxlan
management:
  cidrs: [192.0.2.0/24]
controllers: [ssl:192.0.2.250:6653]
hosts:
  - name: kvm1
    datapath_id: "00000000000000a1"
    tunnel_ip: 192.0.2.11
    uplink: eth0
  - name: kvm2
    datapath_id: "00000000000000a2"
    tunnel_ip: 192.0.2.12
    uplink: eth0
vpcs:
  - name: blue
    tiers:
      - name: web
        vni: 5001
        cidr: 10.10.1.0/24
        vms:
          - {name: blue-web-1, host: kvm1, port: vnet0, mac: "52:54:00:0a:01:01", ip: 10.10.1.11}
`

func intp(i int) *int { return &i }

// healthyState is a provisioned kvm1: everything passes.
func healthyState() *OVSDBState {
	return &OVSDBState{
		OVSVersion: "3.1.0", CurCfg: 7, NextCfg: 7,
		SSL:     &SSLState{PrivateKey: "/etc/openvswitch/key.pem", Certificate: "/etc/openvswitch/cert.pem", CACert: "/etc/openvswitch/ca.pem"},
		Bridges: []string{"cloudbr0"},
		Bridge: &BridgeState{
			Name: "cloudbr0", DatapathType: "system", DatapathID: "00000000000000a1", FailMode: "secure",
			Protocols:   []string{"OpenFlow13"},
			OtherConfig: map[string]string{"datapath-id": "00000000000000a1", "hwaddr": "02:00:c0:00:02:0b"},
			Ports: []PortState{
				{Name: "cloudbr0", Interfaces: []InterfaceState{{Name: "cloudbr0", Type: "internal", Ofport: intp(65534)}}},
				{Name: "eth0", Interfaces: []InterfaceState{{Name: "eth0", Ofport: intp(1)}}},
				{Name: "vnet0", Interfaces: []InterfaceState{{Name: "vnet0", Ofport: intp(3)}}},
				{Name: "vpcflow-vxlan", Interfaces: []InterfaceState{{Name: "vpcflow-vxlan", Type: "vxlan", Ofport: intp(2),
					Options: map[string]string{"remote_ip": "flow", "key": "flow", "local_ip": "192.0.2.11"}}}},
			},
			Controllers: []ControllerState{{Target: "ssl:192.0.2.250:6653", ConnectionMode: "out-of-band", IsConnected: true, Role: "master"}},
		},
	}
}

func healthyEnv() *fakeEnv {
	return &fakeEnv{
		files: map[string]string{
			"/run/ovs/ovs-vswitchd.pid":   "100\n",
			"/proc/100/comm":              "ovs-vswitchd\n",
			"/run/ovs/ovsdb-server.pid":   "200\n",
			"/proc/200/comm":              "ovsdb-server\n",
			"/proc/200/net/tcp":           procNetHeader,
			"/proc/200/net/tcp6":          procNetHeader,
			"/proc/1/comm":                "init\n",
			"/sys/class/net/cloudbr0/mtu": "1500\n",
			"/sys/class/net/eth0/mtu":     "1600\n",
		},
		dirs: map[string][]string{
			"/proc":        {"1", "100", "200", "self", "net"},
			"/proc/200/fd": {"0", "1", "2", "7"},
		},
		links: map[string]string{
			"/proc/200/fd/0": "/dev/null", "/proc/200/fd/7": "socket:[777]",
		},
		cmds: map[string]string{
			"ovs-appctl --timeout=5 -t ovsdb-server ovsdb-server/list-remotes": "db:Open_vSwitch,Open_vSwitch,manager_options\npunix:/run/ovs/db.sock\n",
		},
		addrs:  map[string][]netip.Prefix{"cloudbr0": {netip.MustParsePrefix("192.0.2.11/24")}},
		kernel: []string{"ovs-system"},
		http:   map[string]string{},
		states: []*OVSDBState{healthyState()},
	}
}

type doctorCase struct {
	env  *fakeEnv
	opts DoctorOptions
}

func newCase(t *testing.T) *doctorCase {
	t.Helper()
	bp, err := flows.Parse("bp.yaml", []byte(testBlueprint))
	if err != nil {
		t.Fatal(err)
	}
	return &doctorCase{env: healthyEnv(), opts: DoctorOptions{
		Endpoint: "unix:/run/ovs/db.sock", Bridge: "cloudbr0", Blueprint: bp, Host: bp.HostByName("kvm1"),
		RunDir: "/run/ovs", Wait: -1,
	}}
}

func (c *doctorCase) run(t *testing.T) map[string]CheckResult {
	t.Helper()
	c.opts.Env = c.env
	res := Doctor(context.Background(), c.opts)
	names := make([]string, len(res))
	out := map[string]CheckResult{}
	for i, r := range res {
		names[i] = r.Check
		out[r.Check] = r
		if (r.Status == StatusFail || r.Status == StatusWarn) && r.Remediation == "" {
			t.Errorf("%s %s without remediation: %s", r.Check, r.Status, r.Detail)
		}
		if r.Detail == "" {
			t.Errorf("%s %s without detail", r.Check, r.Status)
		}
	}
	if !slices.Equal(names, DoctorChecks) {
		t.Fatalf("checks = %v, want the stable list %v", names, DoctorChecks)
	}
	return out
}

func (c *doctorCase) br() *BridgeState { return c.env.states[0].Bridge }

func expect(t *testing.T, res map[string]CheckResult, check string, want CheckStatus, detail string) {
	t.Helper()
	got := res[check]
	if got.Status != want || !strings.Contains(got.Detail, detail) {
		t.Errorf("%s = %s %q, want %s containing %q", check, got.Status, got.Detail, want, detail)
	}
}

func TestDoctorHealthyHost(t *testing.T) {
	c := newCase(t)
	res := c.run(t)
	for _, name := range DoctorChecks {
		want := StatusPass
		if name == CheckControllerStatus {
			want = StatusSkip // no status API, --controller-url not given
		}
		if name == CheckBond {
			want = StatusSkip // a single-NIC uplink
		}
		if res[name].Status != want {
			t.Errorf("%s = %s %q, want %s", name, res[name].Status, res[name].Detail, want)
		}
	}
	if code := DoctorExitCode(Doctor(context.Background(), c.opts)); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}

func TestDoctorExitCode(t *testing.T) {
	for _, tc := range []struct {
		st   []CheckStatus
		want int
	}{
		{nil, 0},
		{[]CheckStatus{StatusPass, StatusWarn, StatusSkip}, 0},
		{[]CheckStatus{StatusPass, StatusFail, StatusWarn}, 1},
	} {
		var rs []CheckResult
		for _, s := range tc.st {
			rs = append(rs, CheckResult{Status: s})
		}
		if got := DoctorExitCode(rs); got != tc.want {
			t.Errorf("%v: exit %d, want %d", tc.st, got, tc.want)
		}
	}
}

func TestDoctorOVSDBUnreachable(t *testing.T) {
	c := newCase(t)
	c.env.dbErr = errors.New("dial unix /run/ovs/db.sock: connect: no such file or directory")
	res := c.run(t)
	expect(t, res, CheckOVSDB, StatusFail, "cannot read ovsdb-server at unix:/run/ovs/db.sock: dial unix")
	expect(t, res, CheckVSwitchd, StatusPass, "pid 100") // the pidfile still answers
	for _, name := range []string{CheckOVSVersion, CheckFailMode, CheckProtocols, CheckDatapathID, CheckControllerTargets, CheckTunnelPort} {
		expect(t, res, name, StatusSkip, "")
	}
	// Checks that do not need OVSDB still run.
	expect(t, res, CheckMTU, StatusPass, "1600")
	expect(t, res, CheckTunnelIP, StatusPass, "")

	c.env.files["/run/ovs/ovs-vswitchd.pid"] = ""
	delete(c.env.files, "/run/ovs/ovs-vswitchd.pid")
	expect(t, c.run(t), CheckVSwitchd, StatusFail, "database is unreadable")
}

func TestDoctorVSwitchd(t *testing.T) {
	t.Run("stale pidfile", func(t *testing.T) {
		c := newCase(t)
		c.env.files["/proc/100/comm"] = "bash\n"
		expect(t, c.run(t), CheckVSwitchd, StatusFail, "stale pidfile")
	})
	t.Run("dead pid", func(t *testing.T) {
		c := newCase(t)
		delete(c.env.files, "/proc/100/comm")
		expect(t, c.run(t), CheckVSwitchd, StatusFail, "not running")
	})
	t.Run("no pidfile, cur_cfg behind", func(t *testing.T) {
		c := newCase(t)
		delete(c.env.files, "/run/ovs/ovs-vswitchd.pid")
		c.env.states[0].NextCfg = 9
		expect(t, c.run(t), CheckVSwitchd, StatusFail, "cur_cfg 7 behind next_cfg 9")
	})
	t.Run("no pidfile, local socket", func(t *testing.T) {
		c := newCase(t)
		delete(c.env.files, "/run/ovs/ovs-vswitchd.pid")
		expect(t, c.run(t), CheckVSwitchd, StatusFail, "ovs-vswitchd is not running")
	})
	t.Run("remote database catches up", func(t *testing.T) {
		c := newCase(t)
		c.opts.Endpoint = "tcp:192.0.2.11:6640"
		c.opts.Wait = time.Second
		delete(c.env.files, "/run/ovs/ovs-vswitchd.pid")
		behind := healthyState()
		behind.NextCfg = 8
		caughtUp := healthyState()
		caughtUp.CurCfg = 8
		caughtUp.NextCfg = 8
		c.env.states = []*OVSDBState{behind, caughtUp}
		expect(t, c.run(t), CheckVSwitchd, StatusWarn, "cur_cfg 8 == next_cfg")
	})
}

func TestDoctorVersion(t *testing.T) {
	c := newCase(t)
	expect(t, c.run(t), CheckOVSVersion, StatusPass, "Open vSwitch 3.1.0")
	c.env.states[0].OVSVersion = ""
	expect(t, c.run(t), CheckOVSVersion, StatusWarn, "version unknown")
	c.env.cmds["ovs-vswitchd --version"] = "ovs-vswitchd (Open vSwitch) 3.1.0\nDPDK 22.11\n"
	expect(t, c.run(t), CheckOVSVersion, StatusPass, "3.1.0 (ovs-vswitchd --version")
}

func TestDoctorDatapath(t *testing.T) {
	missing := fmt.Errorf("genetlink: %w", os.ErrNotExist)
	for _, tc := range []struct {
		name      string
		kernelErr error
		dpType    string
		want      CheckStatus
		detail    string
	}{
		{"kernel+system", nil, "system", StatusPass, "kernel datapath available"},
		{"kernel+default", nil, "", StatusPass, "datapath_type=system"},
		{"kernel+netdev", nil, "netdev", StatusWarn, "uses datapath_type=netdev"},
		{"no kernel+netdev", missing, "netdev", StatusWarn, "kernel datapath unavailable: bridges must use datapath_type=netdev (userspace, slower)"},
		{"no kernel+system", missing, "system", StatusFail, "cannot forward"},
		{"no kernel+default", missing, "", StatusFail, "ovs_datapath not registered"},
		{"probe error+netdev", errors.New("permission denied"), "netdev", StatusWarn, "permission denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCase(t)
			c.env.kernelErr = tc.kernelErr
			c.br().DatapathType = tc.dpType
			expect(t, c.run(t), CheckDatapath, tc.want, tc.detail)
		})
	}
	t.Run("no bridge", func(t *testing.T) {
		c := newCase(t)
		c.env.kernelErr = missing
		c.env.states[0].Bridge = nil
		expect(t, c.run(t), CheckDatapath, StatusWarn, "kernel datapath unavailable")
	})
}

func TestDoctorBridge(t *testing.T) {
	t.Run("linux bridge", func(t *testing.T) {
		c := newCase(t)
		c.env.dirs["/sys/class/net/cloudbr0/bridge"] = []string{"forward_delay"}
		res := c.run(t)
		expect(t, res, CheckBridge, StatusFail, "is a Linux bridge")
		for _, want := range []string{"ovs-vsctl --timeout=10 add-br cloudbr0", "network.bridge.type=openvswitch", "add-port cloudbr0 eth0"} {
			if !strings.Contains(res[CheckBridge].Remediation, want) {
				t.Errorf("remediation %q lacks %q", res[CheckBridge].Remediation, want)
			}
		}
	})
	t.Run("no OVS bridge", func(t *testing.T) {
		c := newCase(t)
		c.env.states[0].Bridge = nil
		c.env.states[0].Bridges = []string{"br-int"}
		res := c.run(t)
		expect(t, res, CheckBridge, StatusFail, "no Open vSwitch bridge cloudbr0 (bridges: br-int)")
		expect(t, res, CheckFailMode, StatusSkip, "")
		expect(t, res, CheckTunnelPort, StatusSkip, "")
	})
	t.Run("uplink not a port", func(t *testing.T) {
		c := newCase(t)
		c.br().Ports = slices.DeleteFunc(c.br().Ports, func(p PortState) bool { return p.Name == "eth0" })
		expect(t, c.run(t), CheckBridge, StatusFail, "uplink eth0 is not a port of cloudbr0")
	})
	t.Run("no kernel interface", func(t *testing.T) {
		c := newCase(t)
		delete(c.env.files, "/sys/class/net/cloudbr0/mtu")
		expect(t, c.run(t), CheckBridge, StatusWarn, "has no kernel interface")
	})
}

func TestDoctorNetworkManager(t *testing.T) {
	const nmcli = "nmcli -t -f DEVICE,STATE device status"
	nm := func(c *doctorCase) {
		c.env.dirs["/proc"] = append(c.env.dirs["/proc"], "300")
		c.env.files["/proc/300/comm"] = "NetworkManager\n"
	}
	t.Run("absent", func(t *testing.T) {
		c := newCase(t)
		expect(t, c.run(t), CheckNetworkManager, StatusPass, "not running")
	})
	t.Run("manages cloudbr0", func(t *testing.T) {
		c := newCase(t)
		nm(c)
		c.env.cmds[nmcli] = "eth0:unmanaged\ncloudbr0:connected (externally)\nlo:unmanaged\n"
		res := c.run(t)
		expect(t, res, CheckNetworkManager, StatusFail, "manages cloudbr0 (connected (externally))")
		if !strings.Contains(res[CheckNetworkManager].Remediation, "unmanaged-devices=interface-name:cloudbr0") {
			t.Errorf("remediation: %q", res[CheckNetworkManager].Remediation)
		}
	})
	t.Run("manages the uplink", func(t *testing.T) {
		c := newCase(t)
		nm(c)
		c.env.cmds[nmcli] = "eth0:connected\ncloudbr0:unmanaged\n"
		expect(t, c.run(t), CheckNetworkManager, StatusFail, "eth0 (connected)")
	})
	t.Run("unmanaged", func(t *testing.T) {
		c := newCase(t)
		nm(c)
		c.env.cmds[nmcli] = "eth0:unmanaged\ncloudbr0:unmanaged\n"
		expect(t, c.run(t), CheckNetworkManager, StatusPass, "does not manage")
	})
	t.Run("pidfile, nmcli missing", func(t *testing.T) {
		c := newCase(t)
		c.env.files["/run/NetworkManager/NetworkManager.pid"] = "300"
		c.env.files["/proc/300/comm"] = "NetworkManager\n"
		expect(t, c.run(t), CheckNetworkManager, StatusWarn, "cannot tell")
	})
}

func TestDoctorFailMode(t *testing.T) {
	for mode, want := range map[string]CheckStatus{"secure": StatusPass, "standalone": StatusFail, "": StatusFail} {
		c := newCase(t)
		c.br().FailMode = mode
		res := c.run(t)
		if want == StatusFail {
			expect(t, res, CheckFailMode, StatusFail, "standalone flushes to NORMAL on controller loss: guests bridge to the management network")
			if r := res[CheckFailMode].Remediation; !strings.Contains(r, "vpcflow host apply") || !strings.Contains(r, "set-fail-mode cloudbr0 secure") {
				t.Errorf("remediation %q", r)
			}
		} else {
			expect(t, res, CheckFailMode, StatusPass, "secure")
		}
	}
}

func TestDoctorProtocolsAndDatapathID(t *testing.T) {
	c := newCase(t)
	c.br().Protocols = nil
	expect(t, c.run(t), CheckProtocols, StatusWarn, "protocols unset")
	c.br().Protocols = []string{"OpenFlow10"}
	expect(t, c.run(t), CheckProtocols, StatusFail, "lack OpenFlow13")
	c.br().Protocols = []string{"OpenFlow10", "OpenFlow13"}
	expect(t, c.run(t), CheckProtocols, StatusPass, "OpenFlow10,OpenFlow13")

	c = newCase(t)
	delete(c.br().OtherConfig, "datapath-id")
	expect(t, c.run(t), CheckDatapathID, StatusFail, "not set")
	c.br().OtherConfig["datapath-id"] = "00000000000000a2"
	res := c.run(t)
	expect(t, res, CheckDatapathID, StatusFail, "blueprint says 00000000000000a1")
	if !strings.Contains(res[CheckDatapathID].Remediation, "other-config:datapath-id=00000000000000a1") {
		t.Errorf("remediation %q", res[CheckDatapathID].Remediation)
	}
	c.br().OtherConfig["datapath-id"] = "00000000000000A1" // case-insensitive
	c.br().DatapathID = "0000aabbccddeeff"
	expect(t, c.run(t), CheckDatapathID, StatusWarn, "not applied yet")
	// Without a blueprint any value passes.
	c = newCase(t)
	c.opts.Blueprint, c.opts.Host = nil, nil
	c.br().OtherConfig["datapath-id"] = "00000000000000a7"
	c.br().DatapathID = "00000000000000a7"
	expect(t, c.run(t), CheckDatapathID, StatusPass, "00000000000000a7")
}

func TestDoctorControllers(t *testing.T) {
	t.Run("none", func(t *testing.T) {
		c := newCase(t)
		c.br().Controllers = nil
		res := c.run(t)
		expect(t, res, CheckControllerTargets, StatusFail, "no controller")
		expect(t, res, CheckControllerTLS, StatusSkip, "")
		expect(t, res, CheckControllerConnected, StatusSkip, "")
		expect(t, res, CheckConnectionMode, StatusSkip, "")
	})
	t.Run("differs from blueprint", func(t *testing.T) {
		c := newCase(t)
		c.br().Controllers[0].Target = "ssl:192.0.2.251:6653"
		expect(t, c.run(t), CheckControllerTargets, StatusWarn, "missing: ssl:192.0.2.250:6653; not in the blueprint: ssl:192.0.2.251:6653")
	})
	t.Run("tcp", func(t *testing.T) {
		c := newCase(t)
		c.br().Controllers[0].Target = "tcp:192.0.2.250:6653"
		res := c.run(t)
		expect(t, res, CheckControllerTLS, StatusWarn, "control channel not encrypted")
		if !strings.Contains(res[CheckControllerTLS].Remediation, "use ssl: targets with ovs-vsctl set-ssl") {
			t.Errorf("remediation %q", res[CheckControllerTLS].Remediation)
		}
	})
	t.Run("ssl without set-ssl", func(t *testing.T) {
		c := newCase(t)
		c.env.states[0].SSL = nil
		expect(t, c.run(t), CheckControllerTLS, StatusFail, "no complete SSL configuration")
		c.env.states[0].SSL = &SSLState{PrivateKey: "k", Certificate: "c"}
		expect(t, c.run(t), CheckControllerTLS, StatusFail, "no complete SSL configuration")
	})
	t.Run("unix only", func(t *testing.T) {
		c := newCase(t)
		c.opts.Blueprint.Controllers = []string{"unix:/run/vpcflow.sock"}
		c.br().Controllers[0].Target = "unix:/run/vpcflow.sock"
		expect(t, c.run(t), CheckControllerTLS, StatusPass, "local")
	})
	t.Run("not connected", func(t *testing.T) {
		c := newCase(t)
		c.br().Controllers[0].IsConnected = false
		c.br().Controllers[0].ConnectionMode = ""
		res := c.run(t)
		expect(t, res, CheckControllerConnected, StatusFail, "lags ~5 s")
		expect(t, res, CheckConnectionMode, StatusPass, "while no controller is connected")
		if DoctorExitCode(Doctor(context.Background(), c.opts)) != 1 {
			t.Error("exit code not 1")
		}
	})
	t.Run("connects while polling", func(t *testing.T) {
		c := newCase(t)
		c.opts.Wait = 3 * time.Second
		down := healthyState()
		down.Bridge.Controllers[0].IsConnected = false
		c.env.states = []*OVSDBState{down, down, healthyState()}
		start := time.Now()
		expect(t, c.run(t), CheckControllerConnected, StatusPass, "connected to ssl:192.0.2.250:6653 (master)")
		if time.Since(start) > 2500*time.Millisecond {
			t.Errorf("poll took %s", time.Since(start))
		}
	})
	t.Run("one replica down", func(t *testing.T) {
		c := newCase(t)
		c.opts.Blueprint.Controllers = []string{"ssl:192.0.2.250:6653", "ssl:192.0.2.251:6653"}
		c.br().Controllers = append(c.br().Controllers, ControllerState{Target: "ssl:192.0.2.251:6653", ConnectionMode: "out-of-band"})
		res := c.run(t)
		expect(t, res, CheckControllerTargets, StatusPass, "")
		expect(t, res, CheckControllerConnected, StatusWarn, "not connected: ssl:192.0.2.251:6653")
	})
	t.Run("in-band while connected", func(t *testing.T) {
		c := newCase(t)
		c.br().Controllers[0].ConnectionMode = ""
		res := c.run(t)
		expect(t, res, CheckConnectionMode, StatusWarn, "hidden in-band flows let guests reach the controller")
		if !strings.Contains(res[CheckConnectionMode].Remediation, "vpcflow host watch") {
			t.Errorf("remediation %q", res[CheckConnectionMode].Remediation)
		}
		c.br().Controllers[0].ConnectionMode = "in-band"
		expect(t, c.run(t), CheckConnectionMode, StatusWarn, "in-band")
	})
}

func TestParsePassiveRemote(t *testing.T) {
	for in, want := range map[string]string{
		"ptcp:6640":             "ptcp 0.0.0.0:6640",
		"ptcp:6640:0.0.0.0":     "ptcp 0.0.0.0:6640",
		"ptcp:6640:127.0.0.1":   "ptcp 127.0.0.1:6640",
		"pssl:6640:192.0.2.11":  "pssl 192.0.2.11:6640",
		"ptcp:6640:[::]":        "ptcp [::]:6640",
		"ptcp:6640:[::1]":       "ptcp [::1]:6640",
		"punix:/run/db.sock":    "",
		"tcp:192.0.2.1:6640":    "",
		"db:Open_vSwitch,a,b":   "",
		"ptcp:notaport":         "",
		"ptcp:6640:not-an-addr": "",
	} {
		got := ""
		if proto, port, a, ok := ParsePassiveRemote(in); ok {
			got = proto + " " + netip.AddrPortFrom(a, uint16(port)).String()
		}
		if got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

func TestParseProcNetTCP(t *testing.T) {
	data := procNetHeader +
		tcpLine("0100007F", 6640, "11") +
		tcpLine("00000000", 16640, "12") +
		tcpLine("0B0200C0", 6641, "13") +
		// an established connection is not a listener
		"   3: 0100007F:19F0 0100007F:D3A2 01 00000000:00000000 00:00000000 00000000     0        0 14 1 0000000000000000 20 4 30 10 -1\n"
	got := ParseProcNetTCP(data)
	want := map[string]string{"11": "127.0.0.1:6640", "12": "0.0.0.0:16640", "13": "192.0.2.11:6641"}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for ino, ap := range want {
		if got[ino].String() != ap {
			t.Errorf("inode %s: %s, want %s", ino, got[ino], ap)
		}
	}
	v6 := procNetHeader +
		tcpLine("00000000000000000000000000000000", 6640, "21") +
		tcpLine("00000000000000000000000001000000", 6641, "22")
	got = ParseProcNetTCP(v6)
	if got["21"].String() != "[::]:6640" || got["22"].String() != "[::1]:6641" {
		t.Errorf("tcp6: %v", got)
	}
}

func TestDoctorOVSDBListen(t *testing.T) {
	const listRemotes = "ovs-appctl --timeout=5 -t ovsdb-server ovsdb-server/list-remotes"
	remotes := func(c *doctorCase, rs ...string) {
		c.env.cmds[listRemotes] = "punix:/run/ovs/db.sock\n" + strings.Join(rs, "\n") + "\n"
	}
	socket := func(c *doctorCase, line string) {
		c.env.files["/proc/200/net/tcp"] = procNetHeader + line
	}
	for _, tc := range []struct {
		name   string
		setup  func(c *doctorCase)
		want   CheckStatus
		detail string
	}{
		{"unix only", func(c *doctorCase) {}, StatusPass, "no TCP listeners"},
		{"ptcp all addresses (remote)", func(c *doctorCase) { remotes(c, "ptcp:6640") }, StatusFail, "0.0.0.0:6640"},
		{"ptcp all addresses (socket + remote)", func(c *doctorCase) {
			remotes(c, "ptcp:16640:0.0.0.0")
			socket(c, tcpLine("00000000", 16640, "777"))
		}, StatusFail, "ptcp 0.0.0.0:16640 (remote ptcp:16640:0.0.0.0, listening): every address"},
		{"socket only (remote list unavailable)", func(c *doctorCase) {
			delete(c.env.cmds, listRemotes)
			socket(c, tcpLine("00000000", 6640, "777"))
		}, StatusFail, "tcp 0.0.0.0:6640 (listening socket)"},
		{"socket of another process ignored", func(c *doctorCase) {
			socket(c, tcpLine("00000000", 22, "999"))
		}, StatusPass, "no TCP listeners"},
		{"ipv6 any", func(c *doctorCase) { remotes(c, "ptcp:6640:[::]") }, StatusFail, "[::]:6640"},
		{"loopback", func(c *doctorCase) {
			remotes(c, "ptcp:6640:127.0.0.1")
			socket(c, tcpLine("0100007F", 6640, "777"))
		}, StatusPass, "127.0.0.1:6640"},
		{"management without TLS", func(c *doctorCase) { remotes(c, "ptcp:6640:192.0.2.11") }, StatusWarn, "management address without TLS"},
		{"management with TLS", func(c *doctorCase) { remotes(c, "pssl:6640:192.0.2.11") }, StatusPass, "pssl 192.0.2.11:6640"},
		{"outside management", func(c *doctorCase) { remotes(c, "pssl:6640:203.0.113.5") }, StatusFail, "outside the management CIDRs [192.0.2.0/24]"},
		{"no blueprint", func(c *doctorCase) {
			c.opts.Blueprint, c.opts.Host = nil, nil
			remotes(c, "ptcp:6640:203.0.113.5")
		}, StatusWarn, "cannot tell"},
		{"Manager row", func(c *doctorCase) {
			c.env.states[0].Managers = []ManagerState{{Target: "ptcp:6640"}}
		}, StatusFail, "Manager ptcp:6640"},
		{"active Manager is not a listener", func(c *doctorCase) {
			c.env.states[0].Managers = []ManagerState{{Target: "tcp:192.0.2.250:6640"}}
		}, StatusPass, "no TCP listeners"},
		{"fail wins over warn", func(c *doctorCase) { remotes(c, "ptcp:6641:192.0.2.11", "ptcp:6640") }, StatusFail, "every address"},
		{"cannot inspect", func(c *doctorCase) { delete(c.env.files, "/run/ovs/ovsdb-server.pid") }, StatusWarn, "cannot inspect"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCase(t)
			tc.setup(c)
			res := c.run(t)
			expect(t, res, CheckOVSDBListen, tc.want, tc.detail)
			if tc.want == StatusFail && !strings.Contains(res[CheckOVSDBListen].Remediation, "remove-remote") {
				t.Errorf("remediation %q", res[CheckOVSDBListen].Remediation)
			}
		})
	}
}

func TestDoctorMTU(t *testing.T) {
	for _, tc := range []struct {
		name   string
		setup  func(c *doctorCase)
		want   CheckStatus
		detail string
	}{
		{"vxlan ok", func(c *doctorCase) {}, StatusPass, "MTU 1600 >= 1550 (1500 guest + 50 vxlan)"},
		{"vxlan exact", func(c *doctorCase) { c.env.files["/sys/class/net/eth0/mtu"] = "1550" }, StatusPass, ">= 1550"},
		{"vxlan low", func(c *doctorCase) { c.env.files["/sys/class/net/eth0/mtu"] = "1500" }, StatusFail, "MTU 1500 < 1550"},
		{"lowered to 1400", func(c *doctorCase) { c.env.files["/sys/class/net/eth0/mtu"] = "1400" }, StatusFail, "MTU 1400 < 1550"},
		{"gre ok", func(c *doctorCase) {
			c.opts.Blueprint.Encapsulation = flows.EncapGRE
			c.env.files["/sys/class/net/eth0/mtu"] = "1542"
		}, StatusPass, "1500 guest + 42 gre"},
		{"gre low", func(c *doctorCase) {
			c.opts.Blueprint.Encapsulation = flows.EncapGRE
			c.env.files["/sys/class/net/eth0/mtu"] = "1541"
		}, StatusFail, "MTU 1541 < 1542"},
		{"smaller guest MTU", func(c *doctorCase) {
			c.opts.GuestMTU = 1450
			c.env.files["/sys/class/net/eth0/mtu"] = "1500"
		}, StatusPass, ">= 1500"},
		{"vlan parent low", func(c *doctorCase) {
			c.opts.Uplink = "eth0.100"
			c.env.files["/sys/class/net/eth0.100/mtu"] = "1600"
			c.env.files["/proc/net/vlan/eth0.100"] = "eth0.100  VID: 100\t REORDER_HDR: 1  dev->priv_flags: 1001\nDevice: eth0\n"
			c.env.files["/sys/class/net/eth0/mtu"] = "1500"
		}, StatusFail, "VLAN parent eth0 MTU 1500 < 1550"},
		{"vlan ok", func(c *doctorCase) {
			c.opts.Uplink = "eth0.100"
			c.env.files["/sys/class/net/eth0.100/mtu"] = "1600"
			c.env.files["/proc/net/vlan/eth0.100"] = "eth0.100  VID: 100\nDevice: eth0\n"
		}, StatusPass, "802.1Q VLAN device"},
		{"missing uplink", func(c *doctorCase) { delete(c.env.files, "/sys/class/net/eth0/mtu") }, StatusFail, "interface eth0 not found"},
		{"uplink guessed without blueprint", func(c *doctorCase) { c.opts.Blueprint, c.opts.Host = nil, nil }, StatusPass, "uplink eth0"},
		{"uplink unknown", func(c *doctorCase) {
			c.opts.Blueprint, c.opts.Host = nil, nil
			c.br().Ports = append(c.br().Ports, PortState{Name: "eth1", Interfaces: []InterfaceState{{Name: "eth1"}}})
		}, StatusSkip, "uplink unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCase(t)
			tc.setup(c)
			expect(t, c.run(t), CheckMTU, tc.want, tc.detail)
		})
	}
}

func TestDoctorTunnelIP(t *testing.T) {
	c := newCase(t)
	expect(t, c.run(t), CheckTunnelIP, StatusPass, "192.0.2.11/24 is on cloudbr0")
	c.env.addrs["cloudbr0"] = []netip.Prefix{netip.MustParsePrefix("192.0.2.99/24")}
	expect(t, c.run(t), CheckTunnelIP, StatusWarn, "not configured on cloudbr0")
	delete(c.env.addrs, "cloudbr0")
	expect(t, c.run(t), CheckTunnelIP, StatusWarn, "cannot read")
	c.opts.Host = nil
	expect(t, c.run(t), CheckTunnelIP, StatusSkip, "")
}

func TestDoctorTunnelPort(t *testing.T) {
	tunnel := func(c *doctorCase) *InterfaceState {
		for i := range c.br().Ports {
			if strings.HasPrefix(c.br().Ports[i].Name, "vpcflow-") {
				return &c.br().Ports[i].Interfaces[0]
			}
		}
		t.Fatal("no tunnel port in fixture")
		return nil
	}
	for _, tc := range []struct {
		name   string
		setup  func(c *doctorCase)
		want   CheckStatus
		detail string
	}{
		{"ok", func(c *doctorCase) {}, StatusPass, "vpcflow-vxlan: type vxlan, remote_ip=flow, key=flow, local_ip=192.0.2.11, ofport 2"},
		{"missing", func(c *doctorCase) {
			c.br().Ports = slices.DeleteFunc(c.br().Ports, func(p PortState) bool { return p.Name == "vpcflow-vxlan" })
		}, StatusFail, "vpcflow-vxlan is missing"},
		{"wrong encapsulation", func(c *doctorCase) { c.opts.Blueprint.Encapsulation = flows.EncapGRE }, StatusFail, "vpcflow-gre is missing"},
		{"per-peer options", func(c *doctorCase) { tunnel(c).Options["remote_ip"] = "192.0.2.12" }, StatusFail, `options:remote_ip="192.0.2.12", want flow`},
		{"key unset", func(c *doctorCase) { delete(tunnel(c).Options, "key") }, StatusFail, "options:key"},
		{"wrong local_ip", func(c *doctorCase) { tunnel(c).Options["local_ip"] = "192.0.2.99" }, StatusFail, "want 192.0.2.11"},
		{"interface error", func(c *doctorCase) {
			tunnel(c).Error = "could not add network device vpcflow-vxlan to ofproto (File exists)"
			tunnel(c).Ofport = intp(-1)
		}, StatusFail, "File exists"},
		{"wrong type", func(c *doctorCase) { tunnel(c).Type = "geneve" }, StatusFail, `type "geneve"`},
		{"no blueprint, gre found", func(c *doctorCase) {
			c.opts.Blueprint, c.opts.Host = nil, nil
			p := &c.br().Ports[3]
			p.Name, p.Interfaces[0].Name, p.Interfaces[0].Type = "vpcflow-gre", "vpcflow-gre", "gre"
		}, StatusPass, "vpcflow-gre: type gre"},
		{"no blueprint, none", func(c *doctorCase) {
			c.opts.Blueprint, c.opts.Host = nil, nil
			c.br().Ports = c.br().Ports[:3]
		}, StatusFail, "no vpcflow tunnel port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCase(t)
			tc.setup(c)
			expect(t, c.run(t), CheckTunnelPort, tc.want, tc.detail)
		})
	}
}

func TestDoctorControllerStatus(t *testing.T) {
	const url = "http://192.0.2.250:9653"
	doc := func(bridges string) string { return `{"revision": 3, "bridges": [` + bridges + `]}` }
	for _, tc := range []struct {
		name   string
		body   string
		urlSet bool
		want   CheckStatus
		detail string
	}{
		{"converged master", doc(`{"datapath_id":"00000000000000a1","known":true,"connected":true,"role":"MASTER","converged":true}`), true, StatusPass, "converged, role MASTER, revision 3"},
		{"master not converged", doc(`{"datapath_id":"00000000000000a1","known":true,"connected":true,"role":"MASTER","converged":false,"last_error":"bundle rejected"}`), true, StatusFail, "not converged: bundle rejected"},
		{"slave, owned elsewhere", doc(`{"datapath_id":"00000000000000a1","known":true,"connected":true,"role":"SLAVE","owner":"ctl-2"}`), true, StatusPass, "mastered by replica ctl-2"},
		{"nobody master", doc(`{"datapath_id":"00000000000000a1","known":true,"connected":true,"role":"SLAVE","standby":"no quorum"}`), true, StatusFail, "no replica holds role MASTER"},
		{"not connected", doc(`{"datapath_id":"00000000000000a1","known":true}`), true, StatusFail, "not connected"},
		{"unknown datapath", doc(`{"datapath_id":"00000000000000a1","known":false,"connected":true}`), true, StatusFail, "does not know"},
		{"not listed", doc(`{"datapath_id":"00000000000000a2","known":true}`), true, StatusFail, "does not list datapath 00000000000000a1"},
		{"bad document", `<html>`, true, StatusFail, "not a vpcflow status document"},
		{"unreachable, explicit", "", true, StatusFail, "cannot read"},
		{"unreachable, default", "", false, StatusSkip, "no controller status API"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCase(t)
			c.opts.ControllerURL, c.opts.ControllerURLSet = url, tc.urlSet
			if tc.body != "" {
				c.env.http[url+"/status"] = tc.body
			}
			expect(t, c.run(t), CheckControllerStatus, tc.want, tc.detail)
		})
	}
}

// TestDoctorReadOVSDB reads a real ovsdb-server with the doctor's models
// and runs the checks on it (files and commands of the real host).
func TestDoctorReadOVSDB(t *testing.T) {
	l := startOVS(t, false)
	br, up := randName("vfd"), randName("vfu")
	l.addBridge(br, up)
	ctx := ctxT(t)
	o := applyOpts(l, br, testHost(up))
	if _, err := Apply(ctx, o); err != nil {
		t.Fatal(err)
	}
	l.vsctl("set", "Interface", "vpcflow-vxlan", "error=\"boom\"")
	l.vsctl("set-manager", "ptcp:16640:127.0.0.1", "tcp:192.0.2.250:6640")
	l.vsctl("set-ssl", "/k.pem", "/c.pem", "/ca.pem")
	st, err := SystemEnv{}.ReadOVSDB(ctx, l.endpoint, br)
	if err != nil {
		t.Fatal(err)
	}
	b := st.Bridge
	if b == nil || b.Name != br || b.FailMode != "secure" || b.DatapathType != "netdev" ||
		!slices.Equal(b.Protocols, []string{"OpenFlow13"}) || b.OtherConfig["datapath-id"] != "00000000000000a1" {
		t.Fatalf("bridge = %+v", b)
	}
	if len(b.Controllers) != 2 || b.Controllers[0].Target != "tcp:127.0.0.1:1" || b.Controllers[0].IsConnected {
		t.Errorf("controllers = %+v", b.Controllers)
	}
	var tun *InterfaceState
	for i := range b.Ports {
		if b.Ports[i].Name == "vpcflow-vxlan" {
			tun = &b.Ports[i].Interfaces[0]
		}
	}
	if tun == nil || tun.Type != "vxlan" || tun.Options["remote_ip"] != "flow" || tun.Options["local_ip"] != "198.51.100.11" || tun.Error != "boom" {
		t.Errorf("tunnel interface = %+v", tun)
	}
	if len(st.Managers) != 2 || st.Managers[0].Target != "ptcp:16640:127.0.0.1" {
		t.Errorf("managers = %+v", st.Managers)
	}
	if st.SSL == nil || st.SSL.CACert != "/ca.pem" || !slices.Contains(st.Bridges, br) {
		t.Errorf("ssl = %+v, bridges = %v", st.SSL, st.Bridges)
	}
	if miss, err := (SystemEnv{}).ReadOVSDB(ctx, l.endpoint, randName("vfd")); err != nil || miss.Bridge != nil {
		t.Errorf("missing bridge: %+v %v", miss, err)
	}
	if _, err := (SystemEnv{}).ReadOVSDB(ctx, "unix:"+filepath.Join(l.dir, "nope.sock"), br); err == nil {
		t.Error("dial of a missing socket succeeded")
	}

	// The checks over the real database (no ovs-vswitchd: --no-wait).
	res := Doctor(ctx, DoctorOptions{Endpoint: l.endpoint, Bridge: br, Host: testHost(up), RunDir: l.dir, Wait: -1})
	got := map[string]CheckResult{}
	for _, r := range res {
		got[r.Check] = r
	}
	expect(t, got, CheckOVSDB, StatusPass, "")
	expect(t, got, CheckVSwitchd, StatusFail, "not running")
	expect(t, got, CheckFailMode, StatusPass, "")
	expect(t, got, CheckDatapathID, StatusPass, "matches the blueprint")
	expect(t, got, CheckControllerTLS, StatusWarn, "not encrypted")
	expect(t, got, CheckControllerConnected, StatusFail, "no controller connected")
	expect(t, got, CheckTunnelPort, StatusFail, "error: boom")
	// ovsdb-server runs without the db:...manager_options remote here, so the
	// ptcp Manager is configured but not listening; doctor still reports it
	// (loopback: PASS), from the Manager table and its real sockets.
	expect(t, got, CheckOVSDBListen, StatusPass, "127.0.0.1:16640")
	if DoctorExitCode(res) != 1 {
		t.Error("exit code not 1")
	}
}
