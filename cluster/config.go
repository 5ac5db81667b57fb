package cluster

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/sirupsen/logrus"
)

// Tuned failure-detection defaults. memberlist declares a silent member dead
// after roughly
//
//	detection ≈ ProbeInterval + ProbeTimeout + SuspicionMult × max(1, log10 N) × ProbeInterval
//
// plus on average half a probe round until one of the survivors probes the
// dead member (each survivor probes one member per ProbeInterval,
// round-robin). With the defaults below and N = 3 that is
// 200ms + 100ms + 3 × 1 × 200ms = 0.9 s (measured ≈ 0.9–1.2 s on loopback, see
// the package tests), against 5.5–6.5 s with memberlist.DefaultLANConfig.
//
// A live but slow member is protected by memberlist's suspicion protocol: it
// is only marked dead if it does not refute the suspicion within
// SuspicionMult × ProbeInterval (600 ms), and memberlist's awareness score
// stretches the local probe timeouts when the local replica itself is
// overloaded. Raise ProbeInterval (not SuspicionMult alone) on loaded or
// lossy management networks.
const (
	// DefaultBindPort is memberlist's well-known port (TCP and UDP).
	DefaultBindPort = 7946
	// DefaultProbeInterval is the interval between two failure probes of a
	// random member (memberlist LAN default: 1 s).
	DefaultProbeInterval = 200 * time.Millisecond
	// DefaultProbeTimeout is how long to wait for a direct probe ack before
	// indirect probes start; a LAN round trip is well below it (LAN default:
	// 500 ms).
	DefaultProbeTimeout = 100 * time.Millisecond
	// DefaultSuspicionMult: a suspected member has SuspicionMult ×
	// max(1, log10 N) × ProbeInterval to refute before it is declared dead
	// (LAN default: 4).
	DefaultSuspicionMult = 3
	// DefaultSuspicionMaxTimeoutMult bounds the suspicion timeout when
	// memberlist expects independent confirmations that do not arrive (LAN
	// default: 6). With three replicas only one other survivor can confirm,
	// so the suspicion often runs to this bound: measured on real OVS, 4
	// gave a failover median of 2.4 s; 2 keeps it within the 2 s target.
	DefaultSuspicionMaxTimeoutMult = 2
	// DefaultGossipInterval is how often queued broadcasts (membership and
	// replica state) are gossiped (LAN default: 200 ms).
	DefaultGossipInterval = 100 * time.Millisecond
	// DefaultPushPullInterval is the period of the full TCP state exchange
	// that repairs anything gossip lost (LAN default: 30 s; cheap for a
	// handful of replicas).
	DefaultPushPullInterval = 5 * time.Second
	// DefaultTCPTimeout bounds joins, push/pull and reliable state sends to
	// one peer (LAN default: 10 s).
	DefaultTCPTimeout = 2 * time.Second
	// DefaultRejoinInterval is how often a replica that sees fewer than
	// Replicas live members re-joins the Join peers it is not connected to
	// (this is what heals a partition or a peer that was down at start).
	DefaultRejoinInterval = 2 * time.Second
	// MaxReplicas bounds the replica set: the low GenerationBits bits of a
	// role generation id carry the claiming replica's index in it.
	MaxReplicas = 1 << GenerationBits
	// GenerationBits is how many low bits of a MASTER claim's generation id
	// hold the claiming replica's index in the replica set, so that two
	// replicas never send the same id (see NextGeneration).
	GenerationBits = 8
)

// Config of one replica. DefaultConfig() documents and sets every default;
// Validate() rejects bad values.
type Config struct {
	// Name is the unique replica name. Empty: hostname + ":" + the bound
	// port, resolved at Start.
	Name string
	// BindAddr is the IP memberlist binds (TCP and UDP). Required: the caller
	// passes the management address; there is deliberately no 0.0.0.0
	// default. Binding the unspecified address requires AdvertiseAddr.
	BindAddr string
	// BindPort is the TCP and UDP port. Default 7946. 0 picks a free port
	// (tests); Join entries must then carry explicit ports.
	BindPort int
	// AdvertiseAddr is the address announced to peers. Empty: BindAddr.
	AdvertiseAddr string
	// AdvertisePort is the port announced to peers. 0: the bound port.
	AdvertisePort int
	// Join lists peers "IP[:PORT]" (port defaults to BindPort). The list may
	// include this replica's own address; it is ignored.
	Join []string
	// ReplicaSet names the replicas of the set, in the blueprint's
	// controllers: order (HOST:PORT, the scheme stripped). Required. Only
	// these members count toward the quorum (len/2+1), own bridges, or have
	// their gossiped state heard; any other member is refused (Refused). A
	// replica's index in it is the low bits of its generation ids. Update
	// it with SetReplicaSet.
	ReplicaSet []string
	// Replicas (tests only, with the open test mode): the replica-set size
	// when ReplicaSet is empty. 0: number of Join peers + 1.
	Replicas int

	// ProbeInterval, ProbeTimeout, SuspicionMult and SuspicionMaxTimeoutMult
	// tune failure detection; see the package constants for the formula.
	ProbeInterval           time.Duration
	ProbeTimeout            time.Duration
	SuspicionMult           int
	SuspicionMaxTimeoutMult int
	// GossipInterval is the gossip period for membership and state
	// broadcasts.
	GossipInterval time.Duration
	// PushPullInterval is the period of the full anti-entropy state exchange.
	PushPullInterval time.Duration
	// TCPTimeout bounds one join / push-pull / reliable send.
	TCPTimeout time.Duration
	// RejoinInterval: while fewer than Replicas members are live, retry the
	// Join peers that are not members this often.
	RejoinInterval time.Duration
	// QuorumLease: a peer counts toward the quorum only while a probe ack
	// (or a state message) from it arrived within this window. 0 (default):
	// derived from the probe settings and the replica-set size, see
	// LeaseFor. memberlist slows an isolated node's own probing on purpose,
	// so without a lease a replica cut off by a partition would keep
	// "seeing" its peers alive for seconds after the majority took its
	// bridges over.
	QuorumLease time.Duration

	// SecretKey enables memberlist encryption (AES-GCM) with a keyring
	// holding this key; 16, 24 or 32 bytes. Empty: no encryption. A peer with
	// another key can neither join nor be joined.
	SecretKey []byte
	// AcceptKeys are further keys this replica decrypts with (never
	// encrypts with): the keyring that makes a rolling key rotation hitless
	// (docs/security.md). Each 16, 24 or 32 bytes; needs SecretKey.
	AcceptKeys [][]byte
	// RestrictCIDRs enables the peer allowlist CIDRsAllowed. false (default):
	// every peer address is accepted. true: only peers whose IP is inside one
	// of CIDRsAllowed can exchange any packet with this replica, in either
	// direction — and an EMPTY list then DENIES EVERY PEER (unlike
	// memberlist's own CIDRsAllowed, where empty means allow-all).
	RestrictCIDRs bool
	// CIDRsAllowed is the allowlist used when RestrictCIDRs is true
	// ("192.0.2.0/24", "2001:db8::/32"). Setting it without RestrictCIDRs is
	// rejected by Validate, so a configured list is never silently ignored.
	CIDRsAllowed []string

	// Log receives the package's logs; memberlist's own log lines are routed
	// to it at debug level. Default: logrus.StandardLogger().
	Log logrus.FieldLogger

	// testOpen (tests only): without ReplicaSet, every member counts and
	// Replicas gives the set size.
	testOpen bool
	// testPeerFilter (tests only) drops traffic to/from peers "IP:PORT" for
	// which it returns false, to simulate partitions.
	testPeerFilter func(addr string) bool
	// testProto (tests only) replaces the build's protocol range
	// (protocol.go), to run replicas of two protocols in one process.
	testProto *protoRange

	// TestTransport is for tests only: never set it in production. When
	// set, it wraps memberlist's transport (after the CIDR allowlist) and
	// the wrapper sees every gossip packet and stream, so a test can
	// partition replicas (symmetric or one-way), delay and drop gossip. The
	// seeded fault suite (controller/faultsuite_test.go) uses it.
	TestTransport func(memberlist.Transport) memberlist.Transport
}

// DefaultConfig returns a Config with every default set (Name, BindAddr,
// AdvertiseAddr, AdvertisePort and Join stay empty: see their docs).
func DefaultConfig() Config {
	return Config{
		BindPort:                DefaultBindPort,
		ProbeInterval:           DefaultProbeInterval,
		ProbeTimeout:            DefaultProbeTimeout,
		SuspicionMult:           DefaultSuspicionMult,
		SuspicionMaxTimeoutMult: DefaultSuspicionMaxTimeoutMult,
		GossipInterval:          DefaultGossipInterval,
		PushPullInterval:        DefaultPushPullInterval,
		TCPTimeout:              DefaultTCPTimeout,
		RejoinInterval:          DefaultRejoinInterval,
		Log:                     logrus.StandardLogger(),
	}
}

// Validate checks every field and returns all problems at once, each naming
// the field and the fix.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf("cluster config: "+format, a...)) }

	if strings.TrimSpace(c.BindAddr) == "" {
		add("BindAddr is required: pass the replica's management IP (e.g. --cluster-bind 192.0.2.10)")
	} else if ip := net.ParseIP(c.BindAddr); ip == nil {
		add("BindAddr %q is not an IP address", c.BindAddr)
	} else if ip.IsUnspecified() && c.AdvertiseAddr == "" {
		add("BindAddr %s is the unspecified address: also set AdvertiseAddr to the address peers should use", c.BindAddr)
	}
	if c.BindPort < 0 || c.BindPort > 65535 {
		add("BindPort %d out of range 0-65535 (default %d)", c.BindPort, DefaultBindPort)
	}
	if c.AdvertiseAddr != "" {
		if ip := net.ParseIP(c.AdvertiseAddr); ip == nil || ip.IsUnspecified() {
			add("AdvertiseAddr %q is not a usable IP address", c.AdvertiseAddr)
		}
	}
	if c.AdvertisePort < 0 || c.AdvertisePort > 65535 {
		add("AdvertisePort %d out of range 0-65535 (0 = the bound port)", c.AdvertisePort)
	}
	peers, perr := c.peers()
	for _, e := range perr {
		errs = append(errs, e)
	}
	if len(c.ReplicaSet) == 0 && !c.testOpen {
		add("ReplicaSet is empty: pass the replica names of the blueprint's controllers: (HOST:PORT); only those replicas may count toward the quorum or own bridges")
	}
	if err := checkReplicaSet(c.ReplicaSet); err != nil {
		errs = append(errs, fmt.Errorf("cluster config: %w", err))
	}
	if len(c.ReplicaSet) > 0 && c.Name != "" && !slicesContains(c.ReplicaSet, c.Name) {
		add("this replica's name %q is not in the replica set %v: name the replica after its entry in the blueprint's controllers: (--cluster-name, default the --listen address)", c.Name, c.ReplicaSet)
	}
	if c.Replicas < 0 {
		add("Replicas %d is negative (0 = number of Join peers + 1)", c.Replicas)
	} else if c.Replicas > 0 && len(c.ReplicaSet) > 0 {
		add("Replicas and ReplicaSet are both set: the replica-set size is len(ReplicaSet)")
	} else if c.Replicas > 0 && c.Replicas < len(peers)+1 {
		add("Replicas=%d but Join lists %d other replicas: a replica set smaller than the peers would let two sides both have quorum; set Replicas to the number of controllers (at least %d)",
			c.Replicas, len(peers), len(peers)+1)
	}
	if c.ProbeInterval < MinProbeInterval || c.ProbeInterval > MaxProbeInterval {
		add("ProbeInterval (--probe-interval) %s out of range %s-%s (default %s)", c.ProbeInterval, MinProbeInterval, MaxProbeInterval, DefaultProbeInterval)
	}
	if c.ProbeTimeout <= 0 {
		add("ProbeTimeout (--probe-timeout) must be > 0 (default %s)", DefaultProbeTimeout)
	} else if c.ProbeInterval > 0 && c.ProbeTimeout >= c.ProbeInterval {
		add("ProbeTimeout (--probe-timeout) %s must be shorter than ProbeInterval (--probe-interval) %s (indirect probes need the rest of the interval)", c.ProbeTimeout, c.ProbeInterval)
	}
	if c.SuspicionMult < 1 || c.SuspicionMult > 20 {
		add("SuspicionMult (--suspicion-mult) %d out of range 1-20 (default %d)", c.SuspicionMult, DefaultSuspicionMult)
	}
	if c.QuorumLease < 0 {
		add("QuorumLease %s is negative (0 = derived from the probe settings)", c.QuorumLease)
	} else if c.QuorumLease > 0 && c.ProbeInterval > 0 {
		n := max(c.replicaSetSize(), 2)
		if minLease := time.Duration(2*(n-1)) * c.ProbeInterval; c.QuorumLease < minLease {
			add("QuorumLease %s is shorter than one worst-case probe round (2×(N-1)×ProbeInterval = %s with N=%d): a healthy cluster would lose its quorum; leave it 0 (derived: %s)",
				c.QuorumLease, minLease, n, LeaseFor(c.ProbeInterval, c.ProbeTimeout, n))
		}
	}
	if c.SuspicionMaxTimeoutMult < 1 {
		add("SuspicionMaxTimeoutMult must be >= 1 (default %d)", DefaultSuspicionMaxTimeoutMult)
	}
	if c.GossipInterval <= 0 {
		add("GossipInterval must be > 0 (default %s)", DefaultGossipInterval)
	}
	if c.PushPullInterval <= 0 {
		add("PushPullInterval must be > 0: it repairs lost state gossip (default %s)", DefaultPushPullInterval)
	}
	if c.TCPTimeout <= 0 {
		add("TCPTimeout must be > 0 (default %s)", DefaultTCPTimeout)
	}
	if c.RejoinInterval <= 0 {
		add("RejoinInterval must be > 0 (default %s)", DefaultRejoinInterval)
	}
	switch len(c.SecretKey) {
	case 0, 16, 24, 32:
	default:
		add("SecretKey is %d bytes: it must be 16, 24 or 32 bytes (AES-128/192/256), or empty to disable encryption", len(c.SecretKey))
	}
	for i, k := range c.AcceptKeys {
		switch len(k) {
		case 16, 24, 32:
		default:
			add("AcceptKeys[%d] is %d bytes: it must be 16, 24 or 32 bytes", i, len(k))
		}
	}
	if len(c.AcceptKeys) > 0 && len(c.SecretKey) == 0 {
		add("AcceptKeys is set without SecretKey: set the primary key too (the first key of --cluster-key-file)")
	}
	if len(c.CIDRsAllowed) > 0 && !c.RestrictCIDRs {
		add("CIDRsAllowed is set but RestrictCIDRs is false: set RestrictCIDRs=true to enforce the allowlist, or clear CIDRsAllowed")
	}
	if _, err := parseCIDRs(c.CIDRsAllowed); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// replicaName returns the configured or derived replica name.
func (c *Config) replicaName(boundPort int) string {
	if c.Name != "" {
		return c.Name
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = c.BindAddr
	}
	return host + ":" + strconv.Itoa(boundPort)
}

// peers returns the normalized ("IP:PORT"), de-duplicated Join peers other
// than this replica, and the errors of unparsable entries.
func (c *Config) peers() ([]string, []error) {
	var errs []error
	self := map[string]bool{}
	if c.BindPort != 0 {
		if ip := net.ParseIP(c.BindAddr); ip != nil {
			self[net.JoinHostPort(ip.String(), strconv.Itoa(c.BindPort))] = true
		}
		if ip := net.ParseIP(c.AdvertiseAddr); ip != nil {
			p := c.AdvertisePort
			if p == 0 {
				p = c.BindPort
			}
			self[net.JoinHostPort(ip.String(), strconv.Itoa(p))] = true
		}
	}
	seen := map[string]bool{}
	var out []string
	for _, j := range c.Join {
		n, err := normalizePeer(j, c.BindPort)
		if err != nil {
			errs = append(errs, fmt.Errorf("cluster config: Join entry %q: %w", j, err))
			continue
		}
		if self[n] || seen[n] {
			continue
		}
		seen[n] = true
		out = append(out, n)
	}
	return out, errs
}

// replicaSetSize returns the replica-set size used for quorum.
func (c *Config) replicaSetSize() int {
	if len(c.ReplicaSet) > 0 {
		return len(c.ReplicaSet)
	}
	if c.Replicas > 0 {
		return c.Replicas
	}
	p, _ := c.peers()
	return len(p) + 1
}

// normalizePeer turns "IP" or "IP:PORT" into "IP:PORT".
func normalizePeer(s string, defPort int) (string, error) {
	s = strings.TrimSpace(s)
	host, port := s, ""
	if h, p, err := net.SplitHostPort(s); err == nil {
		host, port = h, p
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return "", fmt.Errorf("want IP[:PORT] (IPv6 as [ADDR]:PORT)")
	}
	if port == "" {
		if defPort == 0 {
			return "", fmt.Errorf("no port given and BindPort is 0 (auto): write IP:PORT")
		}
		port = strconv.Itoa(defPort)
	}
	pn, err := strconv.Atoi(port)
	if err != nil || pn < 1 || pn > 65535 {
		return "", fmt.Errorf("port %q out of range 1-65535", port)
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(pn)), nil
}

// parseCIDRs parses the allowlist.
func parseCIDRs(list []string) ([]*net.IPNet, error) {
	var out []*net.IPNet
	var errs []error
	for _, s := range list {
		_, n, err := net.ParseCIDR(strings.TrimSpace(s))
		if err != nil {
			errs = append(errs, fmt.Errorf("cluster config: CIDRsAllowed entry %q is not a CIDR (want e.g. 192.0.2.0/24)", s))
			continue
		}
		out = append(out, n)
	}
	return out, errors.Join(errs...)
}

// Probe interval bounds (--probe-interval).
const (
	MinProbeInterval = 20 * time.Millisecond
	MaxProbeInterval = 10 * time.Second
)

// LeaseFor is the quorum lease derived from the probe settings and the
// replica-set size n: how long a peer counts as alive after the last
// evidence (probe ack or state message) from it.
//
// Each replica probes one peer per ProbeInterval, round-robin over its n-1
// peers in an order reshuffled every round, so two probes of the same peer
// are at most 2(n-1)-1 intervals apart; a lost ack (memberlist then probes
// indirectly, which does not count) adds up to n-1 more. The lease allows
// for two missed acks in a row in the worst alignment:
//
//	lease = 4 × (n-1) × ProbeInterval + ProbeTimeout
//
// n = 3: 1.7 s with the defaults (200 ms / 100 ms), 8.5 s with
// --probe-interval 1s --probe-timeout 500ms. A replica cut off from its
// peers loses its quorum at most lease + ProbeInterval after the cut.
func LeaseFor(probeInterval, probeTimeout time.Duration, n int) time.Duration {
	n = max(n, 2)
	return time.Duration(4*(n-1))*probeInterval + probeTimeout
}

// checkReplicaSet rejects an unusable replica set.
func checkReplicaSet(names []string) error {
	if len(names) > MaxReplicas {
		return fmt.Errorf("replica set has %d replicas: at most %d", len(names), MaxReplicas)
	}
	seen := map[string]bool{}
	for _, n := range names {
		if strings.TrimSpace(n) == "" {
			return errors.New("replica set has an empty name")
		}
		if seen[n] {
			return fmt.Errorf("replica set lists %q twice", n)
		}
		seen[n] = true
	}
	return nil
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// CheckReplicaSetChange reports whether a replica set may change from old
// to next in one step: at most one replica added or removed. Any majority of
// a set and any majority of a set that differs from it by one member
// intersect (|Q1|+|Q2| > |old ∪ next|), so replicas that briefly enforce
// different sets can never both have a quorum. A bigger change (3 → 5, or
// replacing a replica, which is one removal plus one addition) could: do it
// one replica at a time (docs/cluster.md, "Changing the replica set").
func CheckReplicaSetChange(old, next []string) error {
	in := func(s []string) map[string]bool {
		m := map[string]bool{}
		for _, x := range s {
			m[x] = true
		}
		return m
	}
	o, n := in(old), in(next)
	var added, removed []string
	for x := range n {
		if !o[x] {
			added = append(added, x)
		}
	}
	for x := range o {
		if !n[x] {
			removed = append(removed, x)
		}
	}
	if len(added)+len(removed) <= 1 {
		return nil
	}
	sortStrings(added)
	sortStrings(removed)
	return fmt.Errorf("controllers: changes the replica set by more than one replica (added %v, removed %v): two replicas enforcing the old and the new list could both have a quorum; change it one replica at a time (add or remove one controller, reload every replica, wait until all report the new set, then the next; docs/cluster.md \"Changing the replica set\")", added, removed)
}

// Quorate reports whether alive (names) holds a strict majority of set.
func Quorate(set, alive []string) bool {
	in := map[string]bool{}
	for _, x := range set {
		in[x] = true
	}
	n := 0
	seen := map[string]bool{}
	for _, a := range alive {
		if in[a] && !seen[a] {
			seen[a] = true
			n++
		}
	}
	return len(set) > 0 && n >= len(set)/2+1
}

func sortStrings(s []string) { sort.Strings(s) }
