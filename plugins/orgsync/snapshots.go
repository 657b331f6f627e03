package orgsync

import (
	"bytes"
	"encoding/json"
	"hash/maphash"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/lru"
)

// snapshotBytes bounds the parsed snapshots kept. Users of the same
// organizations share one value, so this holds far more users than entries.
const snapshotBytes = 8 << 20

// snapshots keeps the parsed form of the snapshot values requests read, so
// that a cache hit does not decode JSON: keyed by a hash of the value and
// confirmed against its bytes, so two values never share a parse. A parsed
// snapshot is shared by every request that reads the same value: nothing
// may change it.
type snapshots struct {
	seed  maphash.Seed
	cache *lru.Cache[uint64, parsedSnapshot]
}

type parsedSnapshot struct {
	raw  []byte
	snap *snapshot
}

func newSnapshots(maxBytes int64) *snapshots {
	return &snapshots{seed: maphash.MakeSeed(), cache: lru.New[uint64, parsedSnapshot](maxBytes)}
}

// parse returns value decoded, from memory when it was decoded before.
func (s *snapshots) parse(value []byte) (*snapshot, error) {
	k := maphash.Bytes(s.seed, value)
	if p, ok := s.cache.Get(k); ok && bytes.Equal(p.raw, value) {
		return p.snap, nil
	}
	snap := &snapshot{}
	if err := json.Unmarshal(value, snap); err != nil {
		return nil, err
	}
	// The cache hands out its values without copying and never changes
	// them: keeping value itself costs nothing more.
	s.cache.Add(k, parsedSnapshot{raw: value, snap: snap}, int64(3*len(value)+256))
	return snap, nil
}
