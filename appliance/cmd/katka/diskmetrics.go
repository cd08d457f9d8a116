package main

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/shirou/gopsutil/v4/disk"

	"github.com/katka-io/katka/appliance/broker"
)

// registerDiskGauges exports the data directory's limits and the disk's free
// space, so a dashboard can draw sum(katka_partition_bytes) against the
// quota and the free space against the watermark.
func registerDiskGauges(reg prometheus.Registerer, b *broker.Broker, dataDir string) {
	quota, minFree := b.DiskLimits()
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "katka_storage_quota_bytes",
			Help: "storage.quota: the cap on the bytes of all partition logs (0: none)."},
			func() float64 { return float64(quota) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "katka_storage_min_free_bytes",
			Help: "storage.min_free: the free-space watermark of the data directory's disk (0: none)."},
			func() float64 { return float64(minFree) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "katka_storage_free_bytes",
			Help: "Free bytes on the data directory's disk (-1 when it cannot be read)."},
			func() float64 {
				u, err := disk.Usage(dataDir)
				if err != nil {
					return -1
				}
				return float64(u.Free)
			}),
	)
}
