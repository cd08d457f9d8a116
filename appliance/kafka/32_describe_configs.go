package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/broker"
)

// handleDescribeConfigs describes topic configs. Broker resources answer with
// no entries: katka's broker settings live in katka.yaml, not in Kafka configs.
func (s *Server) handleDescribeConfigs(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeConfigsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeConfigsResponse)
	for _, rr := range req.Resources {
		sr := kmsg.NewDescribeConfigsResponseResource()
		sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
		switch rr.ResourceType {
		case kmsg.ConfigResourceTypeTopic:
			info, err := s.b.Topic(rr.ResourceName)
			if err != nil {
				sr.ErrorCode, sr.ErrorMessage = errorCode(err), errorMessage(err)
				break
			}
			want := map[string]bool{}
			for _, n := range rr.ConfigNames {
				want[n] = true
			}
			for _, d := range topicConfigs {
				if rr.ConfigNames != nil && !want[d.name] {
					continue
				}
				v := d.get(info.Config)
				rc := kmsg.NewDescribeConfigsResponseResourceConfig()
				rc.Name, rc.Value = d.name, &v
				// Internal topics' configs are katka's: clients may read, not alter them.
				rc.ReadOnly = d.set == nil || broker.InternalTopic(info.Name)
				rc.IsDefault = d.set == nil
				rc.Source = kmsg.ConfigSourceDynamicTopicConfig
				if d.set == nil {
					rc.Source = kmsg.ConfigSourceDefaultConfig
				}
				if req.Version == 0 {
					rc.Source = -1
				}
				if req.IncludeSynonyms {
					rc.ConfigSynonyms = []kmsg.DescribeConfigsResponseResourceConfigConfigSynonym{{Name: d.name, Value: &v, Source: rc.Source}}
				}
				rc.ConfigType = d.typ
				if req.IncludeDocumentation {
					doc := d.doc
					rc.Documentation = &doc
				}
				sr.Configs = append(sr.Configs, rc)
			}
		case kmsg.ConfigResourceTypeBroker, kmsg.ConfigResourceTypeBrokerLogger:
			sr.Configs = []kmsg.DescribeConfigsResponseResourceConfig{}
		default:
			sr.ErrorCode = errInvalidRequest
			msg := "only topic and broker configs can be described"
			sr.ErrorMessage = &msg
		}
		resp.Resources = append(resp.Resources, sr)
	}
	return resp, nil
}
