package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"
	"github.com/katka-io/katka/appliance/broker"
)

// handleDeleteTopics deletes topics by name, or by id from v6. Internal topics
// answer INVALID_TOPIC_EXCEPTION. In a cell a topic the controller holds is
// deleted through it, then on every node. A delete returns once the topic's directory
// is renamed aside and that is fsynced; a create of the same name meanwhile
// waits for it.
func (s *Server) handleDeleteTopics(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DeleteTopicsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteTopicsResponse)
	topics := req.Topics
	if req.Version < 6 {
		topics = make([]kmsg.DeleteTopicsRequestTopic, len(req.TopicNames))
		for i := range req.TopicNames {
			topics[i].Topic = &req.TopicNames[i]
		}
	}
	var ids map[[16]byte]string
	for _, rt := range topics {
		st := kmsg.NewDeleteTopicsResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		var err error
		name := ""
		if rt.Topic != nil {
			name = *rt.Topic
		} else {
			if ids == nil {
				ids = s.topicIDs(true)
			}
			var ok bool
			if name, ok = ids[rt.TopicID]; ok {
				st.Topic = &name
			} else {
				err = codeErrorf(errUnknownTopicID, "unknown topic id")
			}
		}
		err = s.authTopic(ctx, c, name, auth.OpDelete, err)
		if err == nil && broker.InternalTopic(name) {
			err = s.internalTopicError(c.remote, "delete", name)
		}
		if err == nil {
			info, terr := s.b.Topic(name)
			_, inCell := s.cellTopicPartitions(name)
			switch {
			case inCell: // through the controller (cell_topics.go)
				st.TopicID = info.ID
				err = s.cellDeleteTopic(ctx, name)
			case terr == nil:
				st.TopicID = info.ID
				err = s.b.DeleteTopic(name)
			default:
				err = terr
			}
		}
		if err != nil {
			st.ErrorCode = errorCode(err)
			if req.Version >= 5 {
				st.ErrorMessage = errorMessage(err)
			}
		} else {
			s.log.Info("kafka topic deleted", "topic", name)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp, nil
}
