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
			Simulated: Simulated{
				Enabled:    true,
				Topic:      "sensors.simulated",
				Partitions: 3,
				Interval:   time.Second,
				Sensors: []SimSensor{
					{ID: "temp-1", Kind: "sine", Min: 18, Max: 24, Period: 60 * time.Second, Noise: 0.1, Unit: "C"},
					{ID: "pressure-1", Kind: "random_walk", Min: 0.9, Max: 1.1, Noise: 0.005, Unit: "bar"},
					{ID: "counter-1", Kind: "counter", Min: 0, Max: 1000000, Unit: "count"},
				},
			},
			MQTT: MQTT{
				Enabled:          false,
				QoS:              1,
				DeadLetterTopic:  "mqtt.dead-letter",
				MaxMessageBytes:  1 * MiB,
				BatchMaxMessages: 1000,
				BatchWait:        5 * time.Millisecond,
				ReconnectMin:     100 * time.Millisecond,
				ReconnectMax:     30 * time.Second,
			},
			System: System{
				Enabled:    false,
				Topic:      "sensors.system",
				Partitions: 1,
				Interval:   10 * time.Second,
				Collect:    []string{"cpu", "memory", "disk", "network", "temperature"},
			},
			Modbus: Modbus{
				Enabled:    false,
				Topic:      "sensors.modbus",
				Partitions: 3,
				Interval:   time.Second,
				Timeout:    2 * time.Second,
			},
		},
		Plugins:  defaultPlugins(),
		Sync:     defaultSync(),
		Firmware: defaultFirmware(),
		Groups:   defaultGroups(),
		Cell:     defaultCell(),
		Auth:     defaultAuth(),
	}
}
