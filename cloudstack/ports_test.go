package cloudstack

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/vpcflow/vpcflow/cloudstack/cstest"
	"github.com/vpcflow/vpcflow/flows"
)

// With OVSDB port names, a NIC takes the name of the port libvirt tagged
// with its MAC; a NIC without such a port is skipped (fail closed); on a
// host whose OVSDB is unreadable a NIC keeps the port of the previous
// build, and a NIC the previous build did not have is skipped.
func TestSourceOVSDBPorts(t *testing.T) {
	srv := newFixtureServer(t)
	var mu sync.Mutex
	kvm2Down := false
	calls := map[string]int{}
	lister := func(ctx context.Context, endpoint string) (map[string]string, error) {
		mu.Lock()
		defer mu.Unlock()
		calls[endpoint]++
		switch endpoint {
		case "tcp:192.0.2.11:6640":
			return map[string]string{"02:00:0b:01:01:0b": "vnet0", "02:00:0b:01:01:0d": "vnet1", "02:00:0b:01:02:0d": "vnet2", "02:00:0e:01:01:0b": "vnet3"}, nil
		case "tcp:192.0.2.12:6640":
			if kvm2Down {
				return nil, errors.New("dial tcp 192.0.2.12:6640: connection refused")
			}
			return map[string]string{"02:00:0b:01:01:0c": "vnet5", "02:00:0e:01:02:0b": "vnet6", "02:00:0e:01:01:01": "vnet7", "02:00:0e:01:02:01": "vnet8"}, nil
		case "tcp:192.0.2.13:6640":
			return map[string]string{"02:00:0b:01:02:0b": "vnet0"}, nil // red-web-2 and the router not plugged in
		}
		return nil, errors.New("unexpected endpoint " + endpoint)
	}
	log := logrus.New()
	log.SetOutput(&strings.Builder{})
	src := NewSource(newTestClient(t, srv, nil), "testdata/base-ovsdb.yaml", nil, log)
	src.SetPortLister(lister)
	res, err := src.Build(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	port := func(bp *flows.Blueprint, vm string) string {
		for _, v := range bp.VPCs {
			for _, tr := range v.Tiers {
				for _, m := range tr.VMs {
					if m.Name == vm {
						return m.Host + "/" + m.Port
					}
				}
			}
		}
		return ""
	}
	for vm, want := range map[string]string{"blue-web-1": "kvm1/vnet0", "blue-multi-db": "kvm1/vnet2", "blue-web-2": "kvm2/vnet5",
		"r-21-VM-app": "kvm2/vnet8", "blue-db-1": "kvm3/vnet0", "red-web-2": "", "r-20-VM-web": ""} {
		if got := port(res.Blueprint, vm); got != want {
			t.Errorf("%s: port %q, want %q", vm, got, want)
		}
	}
	if !strings.Contains(string(res.YAML), `#   vm "red-web-2" (id 0f000000-0000-4000-8000-000000000006) nic 41c00000-0000-4000-8000-000000000007: no port of cloudbr0 on kvm3 has external_ids:attached-mac=02:00:0e:01:01:0c`) {
		t.Errorf("skip not listed:\n%s", res.YAML)
	}
	if calls["tcp:192.0.2.11:6640"] != 1 || len(calls) != 3 {
		t.Errorf("lister calls %v: want one per host running VMs", calls)
	}

	// kvm2's OVSDB goes away and a new VM NIC appears on kvm2: known NICs
	// keep their ports, the new one is skipped.
	mu.Lock()
	kvm2Down = true
	mu.Unlock()
	srv.Edit("listVirtualMachines", "0f000000-0000-4000-8000-000000000009", func(o map[string]any) {
		nic := o["nic"].([]any)[0].(map[string]any)
		nic["networkid"], nic["ipaddress"] = "1e710000-0000-4000-8000-000000000001", "10.10.1.99" // legacy-1 joins blue/web on kvm2
	})
	res, err = src.Build(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := port(res.Blueprint, "blue-web-2"); got != "kvm2/vnet5" {
		t.Errorf("blue-web-2 with kvm2's OVSDB down: %q, want the previous kvm2/vnet5", got)
	}
	if got := port(res.Blueprint, "legacy-1"); got != "" {
		t.Errorf("legacy-1 placed at %q although its port is unknown", got)
	}
	if !strings.Contains(string(res.YAML), "host kvm2's OVSDB could not be read (dial tcp 192.0.2.12:6640: connection refused) and no earlier fetch named this NIC's port") {
		t.Errorf("skip reason missing:\n%s", res.YAML)
	}
}

func newFixtureServer(t *testing.T) *cstest.Server {
	t.Helper()
	return cstest.New(t, "testdata/cloud", testAPIKey, testSecret)
}
