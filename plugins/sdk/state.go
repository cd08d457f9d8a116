package sdk

import (
	"maps"
	"slices"

	pb "github.com/katka-io/katka/plugins/proto"
)

// State is a processor's key-value state. katka persists the changes of each
// Process call atomically with the call's input positions.
type State struct {
	m     map[string][]byte
	dirty map[string]bool
}

// NewState returns a state holding m (which it takes over).
func NewState(m map[string][]byte) *State {
	if m == nil {
		m = map[string][]byte{}
	}
	return &State{m: m, dirty: map[string]bool{}}
}

// Get returns the value of key and whether it exists.
func (s *State) Get(key string) ([]byte, bool) {
	v, ok := s.m[key]
	return v, ok
}

// Put sets key to value.
func (s *State) Put(key string, value []byte) {
	s.m[key] = value
	s.dirty[key] = true
}

// Delete removes key.
func (s *State) Delete(key string) {
	delete(s.m, key)
	s.dirty[key] = true
}

// Keys returns every key, sorted.
func (s *State) Keys() []string { return slices.Sorted(maps.Keys(s.m)) }

// Len returns the number of keys.
func (s *State) Len() int { return len(s.m) }

// changes returns the changes since the last call and forgets them.
func (s *State) changes() []*pb.StateEntry {
	out := make([]*pb.StateEntry, 0, len(s.dirty))
	for _, k := range slices.Sorted(maps.Keys(s.dirty)) {
		v, ok := s.m[k]
		out = append(out, &pb.StateEntry{Key: k, Value: v, Deleted: !ok})
	}
	clear(s.dirty)
	return out
}
