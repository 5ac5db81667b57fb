package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vpcflow/vpcflow/examples/lab"
)

// masterSampler is an independent witness of "never two masters": it reads
// every host's Controller rows from OVSDB (ovs-vswitchd writes each status
// snapshot in one transaction, so one sample is one moment of the switch)
// and records any sample in which two controllers of one bridge hold the
// master role. It trusts nothing the replicas report about themselves.
type masterSampler struct {
	mu         sync.Mutex
	samples    int
	withMaster int // samples in which the bridge had exactly one master
	violations []string
	stop       context.CancelFunc
	done       chan struct{}
}

func startMasterSampler(ctx context.Context, l *lab.Lab, hosts []string, every time.Duration) *masterSampler {
	ctx, cancel := context.WithCancel(ctx)
	s := &masterSampler{stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			for _, h := range hosts {
				out, err := l.OVS(ctx, h, "ovs-vsctl", "--format=csv", "--data=bare", "--no-headings", "--columns=target,role", "list", "controller")
				if err != nil {
					continue // the host may be busy; a missed sample is not a verdict
				}
				var masters []string
				for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
					target, role, ok := strings.Cut(line, ",")
					if ok && strings.TrimSpace(role) == "master" {
						masters = append(masters, target)
					}
				}
				s.mu.Lock()
				s.samples++
				if len(masters) == 1 {
					s.withMaster++
				}
				if len(masters) > 1 {
					s.violations = append(s.violations, fmt.Sprintf("%s %s: masters %v", time.Now().Format("15:04:05.000"), h, masters))
				}
				s.mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// finish stops sampling and fails t if any sample showed two masters.
func (s *masterSampler) finish(t *testing.T, what string) {
	t.Helper()
	s.stop()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	t.Logf("%s: %d OVSDB samples of the Controller rows: %d with one master, %d with two masters on one bridge", what, s.samples, s.withMaster, len(s.violations))
	if s.withMaster == 0 {
		// The witness must see the masters it is watching, or it proves nothing.
		t.Errorf("%s: no OVSDB sample showed a master (%d samples read)", what, s.samples)
	}
	for _, v := range s.violations {
		t.Errorf("%s: two masters: %s", what, v)
	}
}
