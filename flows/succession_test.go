package flows

import (
	"strings"
	"testing"
)

func TestCheckSuccessor(t *testing.T) {
	bp := func(rev uint32, body string) *Blueprint {
		b := &Blueprint{Revision: rev, Controllers: []string{body}}
		return b
	}
	cur := bp(2, "tcp:192.0.2.250:6653")
	h := cur.Hash()
	for _, tc := range []struct {
		name string
		next *Blueprint
		want string // "" = accepted
	}{
		{"same content", bp(2, "tcp:192.0.2.250:6653"), ""},
		{"newer revision", bp(3, "tcp:192.0.2.251:6653"), ""},
		{"older revision", bp(1, "tcp:192.0.2.251:6653"), "revision 1 is older than the revision in force 2"},
		{"same revision, other content", bp(2, "tcp:192.0.2.251:6653"), "revision 2 has different content"},
	} {
		err := CheckSuccessor(2, h, tc.next)
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: err %v, want %q", tc.name, err, tc.want)
		}
	}
	// Revision 0 accepts any valid change.
	z := bp(0, "tcp:192.0.2.250:6653")
	if err := CheckSuccessor(0, z.Hash(), bp(0, "tcp:192.0.2.251:6653")); err != nil {
		t.Errorf("revision 0: %v", err)
	}
}
