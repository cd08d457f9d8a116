package kafka

import (
	"encoding/hex"

	"github.com/katka-io/katka/appliance/broker"
)

// topicIDs maps topic ids to names for the request versions that address
// topics by id; it returns nil when need is false.
func (s *Server) topicIDs(need bool) map[[16]byte]string {
	if !need {
		return nil
	}
	ts := s.b.Topics()
	m := make(map[[16]byte]string, len(ts))
	for _, t := range ts {
		m[t.ID] = t.Name
	}
	return m
}

// lookupTopic finds a topic by name, or by id when byID is set.
func (s *Server) lookupTopic(name string, id [16]byte, byID bool, ids map[[16]byte]string) (broker.TopicInfo, error) {
	if byID {
		n, ok := ids[id]
		if !ok {
			return broker.TopicInfo{}, codeErrorf(errUnknownTopicID, "unknown topic id %s", hex.EncodeToString(id[:]))
		}
		name = n
	}
	info, err := s.b.Topic(name)
	if err != nil && byID {
		return info, codeErrorf(errUnknownTopicID, "unknown topic id %s", hex.EncodeToString(id[:]))
	}
	return info, err
}
