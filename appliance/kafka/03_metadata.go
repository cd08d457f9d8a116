package kafka

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"

	"github.com/katka-io/katka/appliance/broker"
)

// handleMetadata describes this one-node cluster: broker 0 leads every
// partition. A null topic list means all topics (an empty one in v0), an
// empty list none; requested topics that do not exist are created when both
// the request and the broker allow auto-creation (never an internal name,
// INVALID_TOPIC_EXCEPTION; past topics.max_partitions, POLICY_VIOLATION).
// Every internal topic is listed with IsInternal set.
func (s *Server) handleMetadata(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.MetadataRequest)
	resp := req.ResponseKind().(*kmsg.MetadataResponse)
	host := s.advHostFor(c)
	resp.Brokers = []kmsg.MetadataResponseBroker{{NodeID: nodeID, Host: host, Port: s.advPortFor(c)}}
	resp.ClusterID = &s.clusterID
	resp.ControllerID = nodeID
	if s.cfg.Cell != nil { // a cell: every node is a broker, leaders from the controller (cell.go)
		resp.Brokers = s.metadataBrokers(c)
		cid := s.cfg.Cell.ClusterID()
		resp.ClusterID, resp.ControllerID = &cid, s.cfg.Cell.ControllerID()
		defer func() {
			for i := range resp.Topics {
				s.cellTopic(&resp.Topics[i])
			}
		}()
	}

	all := req.Topics == nil || req.Version == 0 && len(req.Topics) == 0
	if all {
		for _, t := range s.b.Topics() {
			if !s.allowTopic(ctx, c, t.Name, auth.OpDescribe) {
				continue // Kafka lists only the topics the client may describe
			}
			resp.Topics = append(resp.Topics, metadataTopic(t, nil))
		}
		for _, t := range s.cellOnlyTopics() { // in the cell, not yet on this node (cell.go)
			if s.allowTopic(ctx, c, t.Name, auth.OpDescribe) {
				resp.Topics = append(resp.Topics, metadataTopic(t, nil))
			}
		}
		return resp, nil
	}
	autoCreate := s.b.AutoCreate() && (req.Version < 4 || req.AllowAutoTopicCreation)
	var ids map[[16]byte]string
	seen := map[string]bool{}
	for _, rt := range req.Topics {
		if rt.Topic == nil {
			// Lookup by topic id (v10+).
			if ids == nil {
				ids = s.topicIDs(true)
			}
			name, ok := ids[rt.TopicID]
			var info broker.TopicInfo
			var err error
			if ok {
				info, err = s.b.Topic(name)
			}
			if ok && err == nil && !s.allowTopic(ctx, c, name, auth.OpDescribe) {
				ok = false // an id the client may not describe is as unknown
			}
			if !ok || err != nil {
				mt := kmsg.NewMetadataResponseTopic()
				mt.ErrorCode, mt.TopicID = errUnknownTopicID, rt.TopicID
				resp.Topics = append(resp.Topics, mt)
				continue
			}
			resp.Topics = append(resp.Topics, metadataTopic(info, nil))
			continue
		}
		name := *rt.Topic
		if seen[name] {
			continue
		}
		seen[name] = true
		if !s.allowTopic(ctx, c, name, auth.OpDescribe) {
			resp.Topics = append(resp.Topics, metadataTopic(broker.TopicInfo{Name: name}, codeErrorf(errTopicAuthorizationFailed, "not authorized")))
			continue
		}
		info, err := s.b.Topic(name)
		if parts, ok := s.cellTopicPartitions(name); ok && errors.Is(err, broker.ErrUnknownTopic) {
			// In the cell, not yet on this node: the controller's view counts (cell.go).
			info, err = broker.TopicInfo{Name: name, Partitions: int32(len(parts))}, nil
		}
		if errors.Is(err, broker.ErrUnknownTopic) && autoCreate && !s.allowCluster(ctx, c, auth.OpCreate) && !s.allowTopic(ctx, c, name, auth.OpCreate) {
			err = codeErrorf(errTopicAuthorizationFailed, "not authorized to create %s", name) // Kafka: CREATE on the cluster or the topic
		} else if errors.Is(err, broker.ErrUnknownTopic) {
			if verr := broker.ValidTopicName(name); verr != nil {
				err = verr
			} else if autoCreate && broker.InternalTopic(name) {
				err = s.internalTopicError(c.remote, "create", name)
			} else if autoCreate && s.cfg.Cell != nil {
				err = s.cellAutoCreate(ctx, name) // through the controller (cell.go)
			} else if autoCreate {
				info, err = s.b.EnsureTopic(name, 0)
				if err != nil {
					s.log.Warn("kafka auto-create failed", "topic", name, "err", err)
					err = s.topicAdminError(c.remote, err)
				}
			}
		}
		if err != nil {
			resp.Topics = append(resp.Topics, metadataTopic(broker.TopicInfo{Name: name}, err))
			continue
		}
		resp.Topics = append(resp.Topics, metadataTopic(info, nil))
	}
	return resp, nil
}

// metadataTopic describes one topic, or an error for it.
func metadataTopic(t broker.TopicInfo, err error) kmsg.MetadataResponseTopic {
	mt := kmsg.NewMetadataResponseTopic()
	name := t.Name
	mt.Topic = &name
	if err != nil {
		mt.ErrorCode = errorCode(err)
		return mt
	}
	mt.TopicID = t.ID
	mt.IsInternal = broker.InternalTopic(name) // __consumer_offsets as Kafka marks it, and katka's own
	mt.Partitions = make([]kmsg.MetadataResponseTopicPartition, t.Partitions)
	for p := range mt.Partitions {
		mp := kmsg.NewMetadataResponseTopicPartition()
		mp.Partition = int32(p)
		mp.Leader = nodeID
		mp.LeaderEpoch = 0
		mp.Replicas = []int32{nodeID}
		mp.ISR = []int32{nodeID}
		mp.OfflineReplicas = []int32{}
		mt.Partitions[p] = mp
	}
	return mt
}
