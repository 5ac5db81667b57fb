package tunnel

import (
	"context"
	"strings"
	"testing"
	"time"
)

// PortsByMAC maps libvirt's attached-mac to the port name, only for ports
// of the bridge asked for, and refuses two ports claiming one MAC.
func TestPortsByMAC(t *testing.T) {
	l := startOVS(t, false)
	l.vsctl("add-br", "cloudbr0", "--", "add-port", "cloudbr0", "eth0",
		"--", "add-port", "cloudbr0", "vnet3", "--", "set", "interface", "vnet3", `external_ids:attached-mac="02:00:0B:01:01:0B"`, "external_ids:iface-id=nic-1",
		"--", "add-port", "cloudbr0", "vnet7", "--", "set", "interface", "vnet7", `external_ids:attached-mac="02:00:0e:01:01:0c"`)
	l.vsctl("add-br", "cloudbr1", "--", "add-port", "cloudbr1", "vnet9", "--", "set", "interface", "vnet9", `external_ids:attached-mac="1e:00:c6:33:64:14"`)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, l.endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := c.PortsByMAC(ctx, "cloudbr0")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["02:00:0b:01:01:0b"] != "vnet3" || got["02:00:0e:01:01:0c"] != "vnet7" {
		t.Fatalf("PortsByMAC = %v", got)
	}
	l.vsctl("add-port", "cloudbr0", "vnet4", "--", "set", "interface", "vnet4", `external_ids:attached-mac="02:00:0b:01:01:0b"`)
	if _, err := c.PortsByMAC(ctx, "cloudbr0"); err == nil || !strings.Contains(err.Error(), "both carry attached-mac 02:00:0b:01:01:0b") {
		t.Fatalf("duplicate MAC: %v", err)
	}
	if _, err := c.PortsByMAC(ctx, "nosuchbr"); err == nil || !strings.Contains(err.Error(), "has no bridge nosuchbr") {
		t.Fatalf("missing bridge: %v", err)
	}
}
