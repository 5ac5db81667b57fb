package controller

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/vpcflow/vpcflow/cluster"
)

// TestReloadReplicaSetOneAtATime: in replica mode a reload that changes the
// blueprint's controllers: by more than one replica is rejected (the last
// good policy stays); one added replica is accepted and becomes the
// cluster's replica set (quorum 3 of 4).
func TestReloadReplicaSetOneAtATime(t *testing.T) {
	demo, err := os.ReadFile("../examples/demo/blueprint.yaml")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^controllers:.*$`)
	if !re.Match(demo) {
		t.Fatal("demo blueprint has no controllers: line")
	}
	bpPath := filepath.Join(t.TempDir(), "blueprint.yaml")
	write := func(rev int, ctls ...string) {
		s := re.ReplaceAllString(string(demo), "controllers: ["+strings.Join(ctls, ", ")+"]")
		s = strings.Replace(s, "revision: 1", fmt.Sprintf("revision: %d", rev), 1)
		if err := os.WriteFile(bpPath, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	three := []string{"tcp:192.0.2.250:6653", "tcp:192.0.2.251:6653", "tcp:192.0.2.252:6653"}
	write(1, three...)
	log := logrus.New()
	log.SetOutput(io.Discard)
	c, err := New(Options{BlueprintPath: bpPath, Listen: "tcp:127.0.0.1:0", HTTP: "off", ReloadPoll: time.Hour,
		DriftInterval: time.Hour, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	cfg := cluster.DefaultConfig()
	cfg.Name, cfg.BindAddr, cfg.BindPort, cfg.Log = "192.0.2.250:6653", "127.0.0.1", 0, log
	cfg.ReplicaSet = ReplicaNames(c.Blueprint().Controllers)
	cl, err := cluster.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Shutdown()
	c.SetCluster(cl)

	write(2, append(three, "tcp:192.0.2.253:6653", "ssl:192.0.2.254:6653")...)
	err = c.Reload("test")
	if err == nil || !strings.Contains(err.Error(), "one replica at a time") || !strings.Contains(err.Error(), "controllers:") {
		t.Fatalf("reload 3 → 5 replicas: %v, want a rejection naming controllers: and the procedure", err)
	}
	if r := c.Blueprint().Revision; r != 1 {
		t.Fatalf("revision %d in force after a rejected reload", r)
	}
	write(3, "tcp:192.0.2.250:6653", "tcp:192.0.2.251:6653", "tcp:192.0.2.253:6653")
	if err := c.Reload("test"); err == nil {
		t.Fatal("replacing a replica in one reload accepted")
	}
	write(4, append(three, "tcp:192.0.2.253:6653")...)
	if err := c.Reload("test"); err != nil {
		t.Fatalf("reload 3 → 4 replicas: %v", err)
	}
	if q, n := cl.Quorum(); q != 3 || n != 4 {
		t.Fatalf("after 3 → 4: quorum %d of %d, want 3 of 4", q, n)
	}
	if got := cl.ReplicaSet(); len(got) != 4 || got[3] != "192.0.2.253:6653" {
		t.Fatalf("replica set %v", got)
	}
}
