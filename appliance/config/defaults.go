package config

import "time"

// Default returns katka's built-in configuration: what runs when no file is given, and
// the base every file is laid over. configs/katka.yaml spells out the same values.
// Each call returns a fresh value that shares nothing with earlier calls.
func Default() Config {
	return Config{
		DataDir: "./data",
		Log: Log{
			Level:  "info",
			Format: "text",
		},
		Kafka: Kafka{
			Addr:           "127.0.0.1:9092",
			AdvertisedAddr: "",
			Limits:         defaultKafkaLimits(),
		},
		HTTP: HTTP{
			Addr:   "127.0.0.1:8092",
			Limits: defaultHTTPLimits(),
			TLS:    HTTPTLS{ClientAuth: "none", ClientRole: "read"},
		},
		Storage: Storage{
			Fsync:                  "always",
			FsyncInterval:          time.Second,
			SyncfsMin:              4,
			SegmentBytes:           1 * MiB,
			SegmentCache:           1,
			RetentionCheckInterval: 30 * time.Second,
			Quota:                  0,
			MinFree:                32 * MiB,
		},
		Topics: Topics{
			AutoCreate:               true,
			DefaultPartitions:        1,
			DefaultReplicationFactor: 1,
			Retention:                168 * time.Hour,
			RetentionBytes:           -1,
			OnFull:                   "reject",
			MaxPartitions:            DefaultMaxBrokerPartitions,
		},
		Sensors: Sensors{
			Partitioner: "hash",
			Inputs:      defaultInputs(),
		},
		Plugins:  defaultPlugins(),
		Sync:     defaultSync(),
		Firmware: defaultFirmware(),
		Groups:   defaultGroups(),
		Cell:     defaultCell(),
		Auth:     defaultAuth(),
	}
}
