// Package micro holds Go benchmarks of vpcflow's pure hot paths at the
// benchmark sizes (compile, encode, decode, diff), no switch needed:
//
//	go test -run x -bench . -benchmem ./bench/micro/
package micro

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/vpcflow/vpcflow/bench/gen"
	"github.com/vpcflow/vpcflow/controller"
	"github.com/vpcflow/vpcflow/flows"
)

type fixture struct {
	bp    *flows.Blueprint
	host  string
	flows []flows.Flow // compiled and bound
	ports flows.PortMap
	stats [][]byte // the same flows as a switch's flow-stats entries
}

var (
	fixMu sync.Mutex
	fixes = map[string]*fixture{}
)

// load builds (once) the big-host fixture of about n flows, or the
// realistic 200-host blueprint's host h0 for n == 0.
func load(b *testing.B, n int) *fixture {
	b.Helper()
	key := fmt.Sprint(n)
	fixMu.Lock()
	defer fixMu.Unlock()
	if f, ok := fixes[key]; ok {
		return f
	}
	spec := gen.Realistic(200)
	if n > 0 {
		var err error
		if spec, _, err = gen.BigHost(n); err != nil {
			b.Fatal(err)
		}
	}
	raw, err := gen.Build(spec)
	if err != nil {
		b.Fatal(err)
	}
	bp, _, err := gen.Parse(raw)
	if err != nil {
		b.Fatal(err)
	}
	h := &bp.Hosts[0]
	fs, err := flows.Compile(bp, h.Name)
	if err != nil {
		b.Fatal(err)
	}
	pm := flows.PortMap{h.Uplink: 1, flows.TunnelPortVXLAN: 2}
	for _, p := range bp.VPCs {
		for _, t := range p.Tiers {
			for _, m := range t.VMs {
				if m.Host == h.Name {
					pm[m.Port] = uint32(len(pm) + 1)
				}
			}
		}
	}
	bound, missing := flows.Bind(fs, pm)
	if len(missing) > 0 {
		b.Fatal(missing)
	}
	f := &fixture{bp: bp, host: h.Name, flows: bound, ports: pm}
	for i := range bound {
		m, err := flows.AppendFlowMod(nil, &bound[i], flows.CmdAdd, pm)
		if err != nil {
			b.Fatal(err)
		}
		// flow_mod -> ofp_flow_stats: same match+instructions after 48 bytes.
		e := make([]byte, 48, len(m))
		binary.BigEndian.PutUint16(e[0:], uint16(len(m)))
		e[2] = byte(bound[i].Table)
		binary.BigEndian.PutUint16(e[12:], bound[i].Priority)
		binary.BigEndian.PutUint64(e[24:], uint64(bound[i].Cookie))
		e = append(e, m[48:]...)
		f.stats = append(f.stats, e)
	}
	fixes[key] = f
	return f
}

var sizes = []struct {
	name string
	n    int
}{{"realistic200-h0", 0}, {"big10k", 10000}, {"big100k", 100000}}

func BenchmarkCompile(b *testing.B) {
	for _, s := range sizes {
		f := load(b, s.n)
		b.Run(s.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := flows.Compile(f.bp, f.host); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(f.flows)), "flows")
		})
	}
}

func BenchmarkEncode(b *testing.B) {
	for _, s := range sizes {
		f := load(b, s.n)
		b.Run(s.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				msgs := make([][]byte, 0, len(f.flows))
				for j := range f.flows {
					m, err := flows.AppendFlowMod(nil, &f.flows[j], flows.CmdAdd, f.ports)
					if err != nil {
						b.Fatal(err)
					}
					msgs = append(msgs, m)
				}
			}
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, s := range sizes {
		f := load(b, s.n)
		names := f.ports.Names()
		b.Run(s.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				for _, e := range f.stats {
					if _, err := flows.DecodeFlowStats(e, names); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// BenchmarkDiffInSync is the read-back diff (and a reconnect's diff):
// everything installed, nothing to change.
func BenchmarkDiffInSync(b *testing.B) {
	for _, s := range sizes {
		f := load(b, s.n)
		names := f.ports.Names()
		installed := make([]flows.Flow, len(f.stats))
		for i, e := range f.stats {
			var err error
			if installed[i], err = flows.DecodeFlowStats(e, names); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(s.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				d := controller.DiffFlows(f.flows, installed)
				if !d.Empty() {
					b.Fatalf("not in sync: %d missing %d modified %d extra", len(d.Missing), len(d.Modified), len(d.Extra))
				}
			}
		})
	}
}

// BenchmarkDiffEmpty is the first connect: nothing installed.
func BenchmarkDiffEmpty(b *testing.B) {
	for _, s := range sizes {
		f := load(b, s.n)
		b.Run(s.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				d := controller.DiffFlows(f.flows, nil)
				if len(d.Missing) != len(f.flows) {
					b.Fatal("bad diff")
				}
			}
		})
	}
}

// BenchmarkLoadRealistic200 is what a reload costs before any bridge is
// touched: read, parse and validate the 200-host, 4,000-VM blueprint file,
// hash it and index it.
func BenchmarkLoadRealistic200(b *testing.B) {
	raw, err := gen.Build(gen.Realistic(200))
	if err != nil {
		b.Fatal(err)
	}
	p := filepath.Join(b.TempDir(), "bp.yaml")
	if err := os.WriteFile(p, gen.YAML(raw), 0o644); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		bp, err := flows.Load(p)
		if err != nil {
			b.Fatal(err)
		}
		_ = bp.Hash()
		_ = flows.NewIndex(bp)
	}
}
