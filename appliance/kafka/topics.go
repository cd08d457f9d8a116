package kafka

import (
	"encoding/hex"
	"errors"
	"fmt"

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

// errPolicyViolation is Kafka's POLICY_VIOLATION: a create or partition
// increase that would pass topics.max_partitions (the partitions of all
// topics together) is refused with it, as a CreateTopicPolicy refuses in Kafka.
const errPolicyViolation int16 = 44

// topicAdminError turns a broker error from creating a topic or partitions
// into the error a Kafka client gets: past the broker's partition cap it is
// POLICY_VIOLATION, counted as a "partitions" limit rejection of client.
func (s *Server) topicAdminError(client string, err error) error {
	if errors.Is(err, broker.ErrPartitionLimit) {
		s.limitRejected(broker.LimitPartitions, client, err.Error())
		return codeErrorf(errPolicyViolation, "%s", err.Error())
	}
	return err
}

// checkPartitionBudget refuses, as the broker would, a validate-only create
// of add partitions that would pass the broker's cap.
func (s *Server) checkPartitionBudget(client, topic string, add int32) error {
	if have, max := s.b.PartitionCount(), s.b.MaxPartitions(); have+int(add) > max {
		return s.topicAdminError(client, fmt.Errorf("%s: %w: %d partitions exist, %d more would pass topics.max_partitions %d", topic, broker.ErrPartitionLimit, have, add, max))
	}
	return nil
}

// internalTopicError refuses a client's create, delete or change of an
// internal topic (broker.InternalTopic: names starting with "__" or ".") with
// INVALID_TOPIC_EXCEPTION, the error Kafka gives for a produce into
// __consumer_offsets, and counts it as an "internal_topic" limit rejection.
func (s *Server) internalTopicError(client, op, name string) error {
	s.limitRejected(broker.LimitInternalTopic, client, op+" "+name)
	return codeErrorf(errInvalidTopic, "topic %s is internal (names starting with \"__\" or \".\" are reserved for katka): clients may not %s it", name, op)
}
