package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

var seq atomic.Int64

// uniq returns a name for a per-call log file.
func (l *Lab) uniq(kind string) string {
	return filepath.Join(l.dir, fmt.Sprintf("%s-%d.log", kind, seq.Add(1)))
}

// StartController runs `vpcflow controller ARGS` in the management
// namespace; its output is appended to Dir/controller.log across restarts.
func (l *Lab) StartController(args ...string) (*Proc, error) {
	if l.opts.VPCFlowBin == "" {
		return nil, errors.New("lab: StartController needs Options.VPCFlowBin")
	}
	return l.StartControllerIn(0, args...)
}

// StartControllerIn runs `vpcflow controller ARGS` in replica i's management
// namespace; its output is appended to Dir/controller.log (replica 0) or
// Dir/controller-<i+1>.log.
func (l *Lab) StartControllerIn(i int, args ...string) (*Proc, error) {
	if l.opts.VPCFlowBin == "" {
		return nil, errors.New("lab: StartController needs Options.VPCFlowBin")
	}
	if i < 0 || i >= len(l.mgmtAddrs) {
		return nil, fmt.Errorf("lab: replica %d does not exist (the blueprint lists %d controllers)", i, len(l.mgmtAddrs))
	}
	log := filepath.Join(l.dir, "controller.log")
	if i > 0 {
		log = filepath.Join(l.dir, fmt.Sprintf("controller-%d.log", i+1))
	}
	argv := append([]string{l.opts.VPCFlowBin, "controller"}, args...)
	return l.StartProcess(l.ReplicaNS(i), fmt.Sprintf("controller-%d", i+1), log, argv...)
}

var pingSummary = regexp.MustCompile(`(\d+) packets transmitted, (\d+) (?:packets )?received`)

// parsePing extracts transmitted/received from ping's summary line.
func parsePing(out string) (sent, received int, ok bool) {
	m := pingSummary.FindStringSubmatch(out)
	if m == nil {
		return 0, 0, false
	}
	sent, _ = strconv.Atoi(m[1])
	received, _ = strconv.Atoi(m[2])
	return sent, received, true
}

func secs(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 3, 64)
}

// Ping sends count echo requests from a VM (or any lab namespace: a host
// name, "mgmt", "rogue", or a namespace name) to dst, interval apart,
// waiting up to timeout for each reply, and returns ping's own counts.
// Lost replies are not an error; a ping that cannot run is.
func (l *Lab) Ping(ctx context.Context, fromVM string, dst string, count int, interval time.Duration, timeout time.Duration) (sent, received int, err error) {
	ns, err := l.nsOf(fromVM)
	if err != nil {
		return 0, 0, err
	}
	if count <= 0 {
		count = 1
	}
	if interval <= 0 {
		interval = 200 * time.Millisecond
	}
	if timeout <= 0 {
		timeout = time.Second
	}
	argv := []string{"ping", "-n", "-q", "-c", strconv.Itoa(count), "-i", secs(interval), "-W", secs(timeout), dst}
	out, err := l.Exec(ctx, ns, argv...)
	if s, r, ok := parsePing(out); ok {
		return s, r, nil
	}
	if err == nil {
		err = fmt.Errorf("lab: ping from %s to %s: no summary in output: %s", fromVM, dst, strings.TrimSpace(out))
	}
	return 0, 0, err
}

// StartPing starts a continuous ping (-D timestamps, -O reports each missing
// reply) from a VM (or lab namespace) to dst. Stop it with Stop (SIGINT, so
// ping prints its summary), then read PingStats.
func (l *Lab) StartPing(fromVM, dst string, interval time.Duration) (*Proc, error) {
	ns, err := l.nsOf(fromVM)
	if err != nil {
		return nil, err
	}
	if interval <= 0 {
		interval = 100 * time.Millisecond
	}
	return l.startProcess(ns, "ping-"+fromVM, l.uniq("ping"), "", nil, syscall.SIGINT,
		"ping", "-n", "-D", "-O", "-i", secs(interval), "-W", "1", dst)
}

var (
	pingReply   = regexp.MustCompile(`bytes from .*icmp_seq=(\d+)`)
	pingNoReply = regexp.MustCompile(`no answer yet for icmp_seq=(\d+)`)
)

// PingStats returns the transmitted and received counts of a ping started
// with StartPing: from its summary after Stop, or, while it runs or if it
// was killed, from the per-packet lines (highest icmp_seq seen, replies).
func (p *Proc) PingStats() (transmitted, received int) {
	out := p.Log()
	if s, r, ok := parsePing(out); ok {
		return s, r
	}
	maxSeq := 0
	replies := map[int]bool{}
	for _, line := range strings.Split(out, "\n") {
		if m := pingReply.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			replies[n] = true
			maxSeq = max(maxSeq, n)
		} else if m := pingNoReply.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			maxSeq = max(maxSeq, n)
		}
	}
	return maxSeq, len(replies)
}

const listenerPy = `
import socket, sys
proto, port = sys.argv[1], int(sys.argv[2])
if proto == "tcp":
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(64)
    print("listening tcp", port, flush=True)
    while True:
        c, a = s.accept()
        print("accepted", a[0], a[1], flush=True)
        try:
            c.sendall(b"ok\n")
        finally:
            c.close()
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    print("listening udp", port, flush=True)
    while True:
        d, a = s.recvfrom(65535)
        print("datagram", a[0], a[1], len(d), flush=True)
        s.sendto(d, a)
`

// Listen starts a tiny listener in a lab namespace (VM, host, "mgmt", …) on
// 0.0.0.0:port: tcp accepts and writes "ok\n"; udp echoes every datagram.
// It returns once the socket is bound; its log lists every peer.
func (l *Lab) Listen(ns string, proto string, port int) (*Proc, error) {
	n, err := l.nsOf(ns)
	if err != nil {
		return nil, err
	}
	if proto != "tcp" && proto != "udp" {
		return nil, fmt.Errorf("lab: Listen: proto %q must be tcp or udp", proto)
	}
	p, err := l.startProcess(n, fmt.Sprintf("listen-%s-%d", proto, port), l.uniq("listen"), "", nil, syscall.SIGTERM,
		l.python, "-u", "-c", listenerPy, proto, strconv.Itoa(port))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.waitLog(ctx, "listening "+proto); err != nil {
		_ = p.Stop()
		return nil, err
	}
	return p, nil
}

const connectPy = `
import socket, sys
ip, port, t = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.create_connection((ip, port), timeout=t)
s.settimeout(t)
data = b""
while not data.endswith(b"\n"):
    chunk = s.recv(64)
    if not chunk:
        break
    data += chunk
s.close()
if data.strip() != b"ok":
    sys.exit("connected but read %r instead of ok" % data)
print("ok")
`

// TCPConnect connects from inside a lab namespace (VM name, host, "mgmt",
// or a namespace) to ip:port and expects the Listen greeting "ok". nil means
// connected and greeted within timeout.
func (l *Lab) TCPConnect(ctx context.Context, ns, ip string, port int, timeout time.Duration) error {
	n, err := l.nsOf(ns)
	if err != nil {
		return err
	}
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout+5*time.Second)
	defer cancel()
	_, err = l.Exec(ctx, n, l.python, "-c", connectPy, ip, strconv.Itoa(port), secs(timeout))
	return err
}

// RoguePacket describes crafted tunnel packets sent from the rogue node.
type RoguePacket struct {
	// Encap is "vxlan" (UDP 4789) or "gre" (IP protocol 47, key = Key).
	Encap string
	// DstHost is the target host's name.
	DstHost string
	// Key is the VXLAN VNI or the GRE key.
	Key uint32
	// InnerDstMAC and InnerDstIP address the victim VM.
	InnerDstMAC, InnerDstIP string
	// InnerSrcMAC and InnerSrcIP default to 02:00:00:00:66:66 and 10.66.66.66.
	InnerSrcMAC, InnerSrcIP string
	// OuterSrcIP defaults to RogueAddr; set it to a spoofed peer's IP
	// (see RogueSpoof) to test the allowlist.
	OuterSrcIP string
	// OuterSrcMAC defaults to the rogue NIC's own MAC.
	OuterSrcMAC string
	// Count is the number of packets (default 1).
	Count int
}

// SendRogueVXLAN sends count crafted VXLAN packets (VNI vni, inner ICMP echo
// to innerDstMAC/innerDstIP) from the rogue node to a host's tunnel IP.
func (l *Lab) SendRogueVXLAN(ctx context.Context, dstHost string, vni uint32, innerDstMAC, innerDstIP string, count int) error {
	return l.SendRogue(ctx, RoguePacket{Encap: "vxlan", DstHost: dstHost, Key: vni, InnerDstMAC: innerDstMAC, InnerDstIP: innerDstIP, Count: count})
}

// SendRogueGRE sends count crafted GRE packets (key key, inner ICMP echo to
// innerDstMAC/innerDstIP) from the rogue node to a host's tunnel IP.
func (l *Lab) SendRogueGRE(ctx context.Context, dstHost string, key uint32, innerDstMAC, innerDstIP string, count int) error {
	return l.SendRogue(ctx, RoguePacket{Encap: "gre", DstHost: dstHost, Key: key, InnerDstMAC: innerDstMAC, InnerDstIP: innerDstIP, Count: count})
}

// SendRogue sends crafted tunnel packets from the rogue namespace with scapy.
// The outer destination MAC is the host's tunnel_mac, or else resolved by ARP.
func (l *Lab) SendRogue(ctx context.Context, p RoguePacket) error {
	hi, err := l.host(p.DstHost)
	if err != nil {
		return err
	}
	script := map[string]string{"vxlan": "rogue_vxlan.py", "gre": "rogue_gre.py"}[p.Encap]
	if script == "" {
		return fmt.Errorf("lab: SendRogue: encapsulation %q must be vxlan or gre", p.Encap)
	}
	if p.Count <= 0 {
		p.Count = 1
	}
	argv := []string{l.python, filepath.Join(l.dir, script),
		"--iface", NodeIface, "--dst", hi.addr.String(), "--key", strconv.FormatUint(uint64(p.Key), 10),
		"--inner-dst-mac", p.InnerDstMAC, "--inner-dst-ip", p.InnerDstIP, "--count", strconv.Itoa(p.Count)}
	add := func(flag, v string) {
		if v != "" {
			argv = append(argv, flag, v)
		}
	}
	add("--dst-mac", hi.mac)
	add("--src", p.OuterSrcIP)
	add("--src-mac", p.OuterSrcMAC)
	add("--inner-src-mac", p.InnerSrcMAC)
	add("--inner-src-ip", p.InnerSrcIP)
	_, err = l.Exec(ctx, l.RogueNS(), argv...)
	return err
}

// SendRogueVLAN sends count 802.1Q-tagged ICMP echoes (VLAN vlan, to
// dstMAC/dstIP) from the rogue node onto the underlay, as a node of a
// physical VLAN would (the kernel may have no VLAN links: scapy builds
// them).
func (l *Lab) SendRogueVLAN(ctx context.Context, vlan int, dstMAC, dstIP string, count int) error {
	if count <= 0 {
		count = 1
	}
	_, err := l.Exec(ctx, l.RogueNS(), l.python, filepath.Join(l.dir, "rogue_vlan.py"), "--iface", NodeIface,
		"--vlan", strconv.Itoa(vlan), "--dst-mac", dstMAC, "--dst-ip", dstIP, "--count", strconv.Itoa(count))
	return err
}

// RogueSpoof gives the rogue node an extra address (e.g. a trusted peer's
// tunnel IP, as /32) and, if mac is not empty, a new MAC.
func (l *Lab) RogueSpoof(ctx context.Context, ip, mac string) error {
	ns := l.RogueNS()
	if mac != "" {
		if err := l.ip(ctx, ns, "link", "set", NodeIface, "address", mac); err != nil {
			return err
		}
	}
	if ip != "" {
		if !strings.Contains(ip, "/") {
			ip += "/32"
		}
		if err := l.ip(ctx, ns, "addr", "replace", ip, "dev", NodeIface); err != nil {
			return err
		}
	}
	return nil
}

// SetVMAddr changes a VM's eth0 MAC (if mac is not empty) and adds an extra
// IP (if ip is not empty; /32 unless it carries a prefix length), to test
// port security against spoofing.
func (l *Lab) SetVMAddr(ctx context.Context, vm string, mac string, ip string) error {
	if _, err := l.vm(vm); err != nil {
		return err
	}
	ns := l.VMNS(vm)
	if mac != "" {
		if err := l.ip(ctx, ns, "link", "set", VMIface, "address", mac); err != nil {
			return err
		}
	}
	if ip != "" {
		if !strings.Contains(ip, "/") {
			ip += "/32"
		}
		if err := l.ip(ctx, ns, "addr", "replace", ip, "dev", VMIface); err != nil {
			return err
		}
	}
	return nil
}

// Capture is a running tcpdump.
type Capture struct {
	proc *Proc
	out  string
	err  string
}

// Capture starts `tcpdump -l -n -e` on iface in a lab namespace (VM name,
// host, "mgmt", … or a namespace) with a pcap filter, writing packet lines to
// a file. It returns once tcpdump is listening.
func (l *Lab) Capture(ctx context.Context, ns, iface, filter string) (*Capture, error) {
	n, err := l.nsOf(ns)
	if err != nil {
		return nil, err
	}
	out, errf := l.uniq("capture"), l.uniq("capture-stderr")
	argv := []string{"tcpdump", "-l", "-n", "-e", "-i", iface}
	if filter != "" {
		argv = append(argv, filter)
	}
	p, err := l.startProcess(n, "tcpdump-"+iface, out, errf, nil, syscall.SIGINT, argv...)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := p.waitLog(wctx, "listening on"); err != nil {
		_ = p.Stop()
		return nil, err
	}
	return &Capture{proc: p, out: out, err: errf}, nil
}

var packetLine = regexp.MustCompile(`(?m)^\d{2}:\d{2}:\d{2}\.\d+ `)

// Text returns the packet lines captured so far.
func (c *Capture) Text() string {
	b, _ := os.ReadFile(c.out)
	return string(b)
}

// Count returns the number of packets captured so far.
func (c *Capture) Count() int {
	return len(packetLine.FindAllStringIndex(c.Text(), -1))
}

// Stop stops tcpdump (SIGINT) and returns the captured packet lines.
func (c *Capture) Stop() (string, error) {
	err := c.proc.Stop()
	return c.Text(), err
}
