package config

// MemoryBase is what the derived memory limit allows beside the client
// budgets: the runtime, partitions, groups, connections and the garbage
// collector's headroom.
const MemoryBase = 64 * MiB

// EffectiveMemoryLimit is the soft memory limit katka gives the Go runtime
// (debug.SetMemoryLimit): memory_limit when set, else (0) the client budgets
// plus MemoryBase: kafka.limits.queued_max_request_bytes bounds the Kafka
// requests and fetch responses held, http.limits.max_in_flight_body_bytes
// the HTTP bodies. It returns -1 for no limit (memory_limit: -1).
//
// Without a limit the garbage collector lets the heap grow to twice what is
// live (GOGC=100): with the 64 MiB pool full of fetch buffers, RSS reached
// twice the pool plus the rest. With it the collector runs more often as the
// heap nears the limit, trading CPU for memory; it is soft: when more is
// live, the heap grows past it and collection CPU is capped at about half.
func (c Config) EffectiveMemoryLimit() int64 {
	if c.MemoryLimit != 0 {
		return int64(c.MemoryLimit)
	}
	return int64(c.Kafka.Limits.QueuedMaxRequestBytes + c.HTTP.Limits.MaxInFlightBodyBytes + MemoryBase)
}

// memory checks memory_limit.
func (v *validator) memory(c *Config) {
	if m := c.MemoryLimit; m != 0 && m != -1 && (m < 32*MiB || m > TiB) {
		v.add("memory_limit", "%s is out of range (allowed: -1 for none, 0 to derive it, or 32MiB..1TiB)", m)
	}
}
