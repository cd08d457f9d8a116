package broker

import "context"

// Router sends the writes of katka's own producers (MQTT and sensors, sync
// downlink, plugins, the HTTP API) for a partition another node of a cell
// leads to that node. appliance/cluster implements it and cmd sets it with
// SetRouter; outside a cell there is none and Produce and ProduceBatches
// write locally as they always did (one atomic load of a nil pointer).
type Router interface {
	// Route writes recs to the node leading topic's partition, returning the
	// base offset once that node acknowledged them as acks asks, and reports
	// routed true; routed false means this node leads the partition (or the
	// topic is none of the cell's) and the caller writes locally.
	Route(ctx context.Context, topic string, partition int32, recs []Record, acks Acks) (base int64, routed bool, err error)
}

// routerRef boxes a Router for the atomic pointer.
type routerRef struct{ r Router }

// SetRouter makes Produce and ProduceBatches ask r first (nil: write
// locally). Safe while producers run.
func (b *Broker) SetRouter(r Router) {
	if r == nil {
		b.router.Store(nil)
		return
	}
	b.router.Store(&routerRef{r})
}

// ProduceLocal is ProduceBatches that never asks the Router: the cell's
// receiving side uses it for writes forwarded by another node, so a write
// is forwarded at most once.
func (b *Broker) ProduceLocal(ctx context.Context, topicName string, partition int32, recs []Record, acks Acks) (int64, error) {
	return b.produceBatches(ctx, topicName, partition, recs, acks)
}

// route asks the Router, if there is one, to write recs elsewhere.
func (b *Broker) route(ctx context.Context, topicName string, partition int32, recs []Record, acks Acks) (int64, bool, error) {
	rr := b.router.Load()
	if rr == nil {
		return 0, false, nil
	}
	return rr.r.Route(ctx, topicName, partition, recs, acks)
}
