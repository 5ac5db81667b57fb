package cluster

import (
	"encoding/binary"
	"hash/fnv"
)

// Rendezvous returns the member with the highest random weight for dpid
// (rendezvous / highest-random-weight hashing), or "" if members is empty.
//
// It is deterministic and independent of the order of members: every replica
// that sees the same member set picks the same owner. Removing a member moves
// only the dpids it owned; adding one moves ≈1/N of the dpids, all to the new
// member. The weight function is part of the cluster protocol: changing it
// requires all replicas to be upgraded together.
func Rendezvous(dpid uint64, members []string) string {
	best, bestW := "", uint64(0)
	for i, m := range members {
		w := weight(dpid, m)
		if i == 0 || w > bestW || (w == bestW && m < best) {
			best, bestW = m, w
		}
	}
	return best
}

// weight is FNV-1a over name and the big-endian dpid, finished with the
// splitmix64 finalizer for avalanche.
func weight(dpid uint64, name string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(name))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], dpid)
	_, _ = h.Write(b[:])
	return mix64(h.Sum64() ^ mix64(dpid))
}

func mix64(z uint64) uint64 {
	z += 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}
