package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"
	"github.com/katka-io/katka/appliance/broker"
)

// handleDescribeConfigs describes topic configs (every Kafka topic config,
// DYNAMIC_TOPIC_CONFIG for those set on the topic, DEFAULT_CONFIG for the
// others, synonyms and documentation on request) and katka's broker settings
// under their Kafka names (read-only: they come from katka.yaml). Broker
// loggers answer with no entries.
func (s *Server) handleDescribeConfigs(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeConfigsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeConfigsResponse)
	for _, rr := range req.Resources {
		sr := kmsg.NewDescribeConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		if err := s.authConfigResource(ctx, c, rr.ResourceType, rr.ResourceName, auth.OpDescribeConfigs); err != nil {
			sr.ErrorCode, sr.ErrorMessage = errorCode(err), errorMessage(err)
			resp.Resources = append(resp.Resources, sr)
			continue
		}
		want := map[string]bool{}
		for _, n := range rr.ConfigNames {
			want[n] = true
		}
		wanted := func(name string) bool { return rr.ConfigNames == nil || want[name] }
		sr.Configs = []kmsg.DescribeConfigsResponseResourceConfig{}
		switch rr.ResourceType {
		case kmsg.ConfigResourceTypeTopic:
			info, err := s.b.Topic(rr.ResourceName)
			if err != nil {
				sr.ErrorCode, sr.ErrorMessage = errorCode(err), errorMessage(err)
				break
			}
			internal := broker.InternalTopic(info.Name)
			for _, v := range s.b.TopicConfigValues(info.Config) {
				if wanted(v.Def.Name) {
					sr.Configs = append(sr.Configs, describeTopicConfig(v, internal, req.Version, req.IncludeSynonyms, req.IncludeDocumentation))
				}
			}
		case kmsg.ConfigResourceTypeBroker:
			if err := checkBrokerResource(rr.ResourceName); err != nil {
				sr.ErrorCode, sr.ErrorMessage = errorCode(err), errorMessage(err)
				break
			}
			for _, bc := range s.brokerConfigs() {
				if !wanted(bc.name) {
					continue
				}
				rc := kmsg.NewDescribeConfigsResponseResourceConfig()
				v := bc.value
				rc.Name, rc.Value, rc.ReadOnly, rc.ConfigType = bc.name, &v, true, bc.typ
				rc.Source = kmsg.ConfigSourceStaticBrokerConfig
				if req.Version == 0 {
					rc.Source = -1
				}
				if req.IncludeSynonyms {
					rc.ConfigSynonyms = []kmsg.DescribeConfigsResponseResourceConfigConfigSynonym{{Name: bc.name, Value: &v, Source: kmsg.ConfigSourceStaticBrokerConfig}}
				}
				if req.IncludeDocumentation {
					doc := bc.doc
					rc.Documentation = &doc
				}
				sr.Configs = append(sr.Configs, rc)
			}
		case kmsg.ConfigResourceTypeBrokerLogger:
		default:
			sr.ErrorCode = errInvalidRequest
			msg := "only topic and broker configs can be described"
			sr.ErrorMessage = &msg
		}
		resp.Resources = append(resp.Resources, sr)
	}
	return resp, nil
}
