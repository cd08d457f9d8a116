package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"
	"github.com/katka-io/katka/appliance/broker"
)

// handleAlterConfigs is Kafka's legacy AlterConfigs: the configs given become
// the resource's whole set of dynamic configs, so a topic config not named
// reverts to its default. Every config of a resource is validated before any
// is applied; validate_only applies none. Broker resources answer as Kafka
// answers a change of a config that is not dynamically updatable.
func (s *Server) handleAlterConfigs(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.AlterConfigsRequest)
	resp := req.ResponseKind().(*kmsg.AlterConfigsResponse)
	for i := range req.Resources {
		rr := &req.Resources[i]
		sr := kmsg.NewAlterConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		if err := s.authConfigResource(ctx, c, rr.ResourceType, rr.ResourceName, auth.OpAlterConfigs); err != nil {
			sr.ErrorCode, sr.ErrorMessage = errorCode(err), errorMessage(err)
			resp.Resources = append(resp.Resources, sr)
			continue
		}
		names := make([]string, len(rr.Configs))
		for i, kv := range rr.Configs {
			names[i] = kv.Name
		}
		err := alterResource(rr.ResourceType, rr.ResourceName, names, func() error {
			return s.replaceTopicConfigs(c.remote, rr, req.ValidateOnly)
		})
		if err != nil {
			sr.ErrorCode, sr.ErrorMessage = errorCode(err), errorMessage(err)
		}
		resp.Resources = append(resp.Resources, sr)
	}
	return resp, nil
}

// alterResource routes one resource of AlterConfigs or IncrementalAlterConfigs:
// a topic to alterTopic, a broker to alterBrokerConfigs with the config names
// asked for; other resource types cannot be altered.
func alterResource(typ kmsg.ConfigResourceType, name string, configNames []string, alterTopic func() error) error {
	switch typ {
	case kmsg.ConfigResourceTypeTopic:
		return alterTopic()
	case kmsg.ConfigResourceTypeBroker:
		return alterBrokerConfigs(name, configNames)
	}
	return codeErrorf(errInvalidRequest, "only topic and broker configs can be altered")
}

// replaceTopicConfigs makes rr's configs the topic's overrides. Internal
// topics answer INVALID_TOPIC_EXCEPTION; a missing topic
// UNKNOWN_TOPIC_OR_PARTITION before any config is looked at, as in Kafka.
func (s *Server) replaceTopicConfigs(client string, rr *kmsg.AlterConfigsRequestResource, validateOnly bool) error {
	if broker.InternalTopic(rr.ResourceName) {
		return s.internalTopicError(client, "alter the config of", rr.ResourceName)
	}
	if _, err := s.b.Topic(rr.ResourceName); err != nil {
		return err
	}
	pairs := make([]configPair, len(rr.Configs))
	for i, kv := range rr.Configs {
		pairs[i] = configPair{kv.Name, kv.Value}
	}
	set, err := buildOverrides(pairs, errInvalidRequest)
	if err != nil {
		return err
	}
	if validateOnly {
		return nil
	}
	if err := s.b.SetTopicOverrides(rr.ResourceName, set); err != nil {
		return configError(err)
	}
	s.log.Info("kafka topic configs replaced", "topic", rr.ResourceName, "api", "AlterConfigs", "set", len(set))
	return nil
}
