package firmware

import (
	"hash/fnv"
	"time"
)

// Bucket places a device in 0..99 for percentage waves of artefact name: the
// same device always lands in the same bucket for the same name, so a wave of
// 10% then 50% widens the same group instead of drawing a new one.
func Bucket(name, device string) int {
	h := fnv.New32a()
	h.Write([]byte(name))
	h.Write([]byte{0})
	h.Write([]byte(device))
	return int(h.Sum32() % 100)
}

// WaveOpens returns when wave i opens: the manifest's created time plus the
// After of every wave up to and including i (the rollout schedule is the
// publisher's, so every edge opens a wave at the same moment).
func (m Manifest) WaveOpens(i int) time.Time {
	t := m.Created
	for j := 0; j <= i && j < len(m.Waves); j++ {
		d, _ := time.ParseDuration(m.Waves[j].After)
		t = t.Add(d)
	}
	return t
}

// OpenWaves is how many waves are open at now (all of them when there are none).
func (m Manifest) OpenWaves(now time.Time) int {
	n := 0
	for i := range m.Waves {
		if !now.Before(m.WaveOpens(i)) {
			n = i + 1
		}
	}
	return n
}

// WaveFor returns the first wave whose devices include device (by percentage
// bucket or labels) and whether it is open at now. Without waves every device
// is in wave 0, open. A device in no wave gets -1, false.
func (m Manifest) WaveFor(device string, labels map[string]string, now time.Time) (wave int, open bool) {
	if len(m.Waves) == 0 {
		return 0, true
	}
	b := Bucket(m.Name, device)
	for i, w := range m.Waves {
		in := w.Percent > 0 && b < w.Percent
		if len(w.Labels) > 0 {
			match := true
			for k, v := range w.Labels {
				match = match && labels[k] == v
			}
			in = in || match
		}
		if in {
			return i, !now.Before(m.WaveOpens(i))
		}
	}
	return -1, false
}
