// Package buildinfo is vpcflow's build identity: version, commit, build
// date, Go version, and the OpenFlow/OVSDB features this build speaks.
//
// `make build` sets version, commit and date at link time:
//
//	-ldflags "-X github.com/vpcflow/vpcflow/buildinfo.version=$(git describe --tags --always --dirty)
//	          -X github.com/vpcflow/vpcflow/buildinfo.commit=$(git rev-parse HEAD)
//	          -X github.com/vpcflow/vpcflow/buildinfo.date=<RFC 3339 UTC>"
//
// A plain `go build` (or `go install`) leaves them empty; Get then fills
// them from the module's build information (runtime/debug.ReadBuildInfo:
// the main module's version, which Go derives from the VCS tag/commit, and
// the vcs.revision, vcs.time and vcs.modified settings). No I/O; safe for
// concurrent use.
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"sync"
)

// Set by the linker (-X); see the package comment.
var (
	version string
	commit  string
	date    string
)

// Unknown is what a field holds when neither the linker nor the build
// information supplied it.
const Unknown = "unknown"

// Info identifies one build.
type Info struct {
	Version   string `json:"version"`    // git describe --tags --always --dirty, or the module version
	Commit    string `json:"commit"`     // full commit hash
	Date      string `json:"date"`       // build date (RFC 3339, UTC); the commit time in a plain go build
	GoVersion string `json:"go_version"` // runtime.Version()
	Platform  string `json:"platform"`   // GOOS/GOARCH
	// CGO is false for the static binary `make build` produces
	// (CGO_ENABLED=0: no libc, runs on any Linux of the same architecture).
	CGO bool `json:"cgo"`
}

// Get returns this binary's build identity (computed once).
var Get = sync.OnceValue(func() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	return resolve(version, commit, date, bi)
})

// resolve merges the link-time values with the build information: a value
// set with -X wins; an empty one falls back to bi; what is still missing is
// Unknown.
func resolve(ldVersion, ldCommit, ldDate string, bi *debug.BuildInfo) Info {
	in := Info{Version: ldVersion, Commit: ldCommit, Date: ldDate, GoVersion: runtime.Version()}
	goos, goarch := runtime.GOOS, runtime.GOARCH
	var modified bool
	if bi != nil {
		if bi.GoVersion != "" {
			in.GoVersion = bi.GoVersion
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if in.Commit == "" {
					in.Commit = s.Value
				}
			case "vcs.time":
				if in.Date == "" {
					in.Date = s.Value
				}
			case "vcs.modified":
				modified = s.Value == "true"
			case "CGO_ENABLED":
				in.CGO = s.Value == "1"
			case "GOOS":
				goos = s.Value
			case "GOARCH":
				goarch = s.Value
			}
		}
		if in.Version == "" {
			if v := bi.Main.Version; v != "" && v != "(devel)" {
				in.Version = v // Go ≥ 1.24 derives it from the VCS tag/commit (+dirty)
			} else if in.Commit != "" {
				in.Version = "devel-" + shortHash(in.Commit)
				if modified {
					in.Version += "-dirty"
				}
			}
		}
	}
	in.Platform = goos + "/" + goarch
	if in.Version == "" {
		in.Version = Unknown
	}
	if in.Commit == "" {
		in.Commit = Unknown
	}
	if in.Date == "" {
		in.Date = Unknown
	}
	return in
}

func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// Protocols is what this build speaks to switches and OVSDB servers
// (`vpcflow version` prints it; keep it true when the code changes).
type Protocols struct {
	OpenFlow       ProtocolFeatures `json:"openflow"`
	OVSDB          ProtocolFeatures `json:"ovsdb"`
	Encapsulations []string         `json:"encapsulations"`
}

// ProtocolFeatures names a protocol version and the features used.
type ProtocolFeatures struct {
	Version  string   `json:"version"`
	Features []string `json:"features"`
}

// Features returns this build's protocols and features.
func Features() Protocols {
	return Protocols{
		OpenFlow: ProtocolFeatures{Version: "1.3", Features: []string{
			"bundles (ONF atomic commit)",
			"role request/status with generation ids",
			"multipart flow stats (REPLY_MORE)",
			"barriers with xid-correlated errors",
			"meters (drop logging)",
			"conntrack (ct)",
			"conjunction",
			"Nicira registers",
			"tun_id/tun_src/tun_dst",
			"ssl: (mutual TLS)",
		}},
		OVSDB: ProtocolFeatures{Version: "RFC 7047", Features: []string{
			"unix:, tcp:, ssl: endpoints",
			"conditional (wait-guarded) transactions",
			"Controller connection_mode (in-band guard)",
		}},
		Encapsulations: []string{"vxlan (flow-based port)", "gre (flow-based port)", "802.1Q vlan tiers"},
	}
}
