package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// ByteSize is a number of bytes. In YAML it is written as a plain integer or as a
// number with a unit: B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB
// (powers of 1024), e.g. "4MiB", "512KiB", "10MB". Units are case-insensitive.
// Negative values are sentinels (-1 means unlimited where a field allows it).
type ByteSize int64

// Byte size units.
const (
	KiB ByteSize = 1 << 10 // KiB is 1024 bytes.
	MiB ByteSize = 1 << 20 // MiB is 1024 KiB.
	GiB ByteSize = 1 << 30 // GiB is 1024 MiB.
	TiB ByteSize = 1 << 40 // TiB is 1024 GiB.
	KB  ByteSize = 1e3     // KB is 1000 bytes.
	MB  ByteSize = 1e6     // MB is 1000 KB.
	GB  ByteSize = 1e9     // GB is 1000 MB.
	TB  ByteSize = 1e12    // TB is 1000 GB.
)

// byteUnits maps a lower-case unit suffix to its multiplier.
var byteUnits = map[string]ByteSize{
	"": 1, "b": 1,
	"kb": KB, "mb": MB, "gb": GB, "tb": TB,
	"kib": KiB, "mib": MiB, "gib": GiB, "tib": TiB,
}

// ParseByteSize parses a size such as "4MiB", "512KiB", "10MB", "1GiB", "4096" or "-1".
// A fractional number is allowed when the result is a whole number of bytes ("1.5KiB").
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("%q is not a size (e.g. 4MiB)", s)
	}
	// Split at the first letter: number, optional spaces, unit.
	i := strings.IndexFunc(t, func(r rune) bool {
		return (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')
	})
	num, unit := t, ""
	if i >= 0 {
		num, unit = strings.TrimSpace(t[:i]), t[i:]
	}
	mult, ok := byteUnits[strings.ToLower(unit)]
	if !ok || num == "" {
		return 0, fmt.Errorf("%q is not a size (e.g. 4MiB; units: B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)", s)
	}
	if n, err := strconv.ParseInt(num, 10, 64); err == nil {
		if n > math.MaxInt64/int64(mult) || n < math.MinInt64/int64(mult) {
			return 0, fmt.Errorf("%q is too large", s)
		}
		return ByteSize(n) * mult, nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%q is not a size (e.g. 4MiB)", s)
	}
	v := f * float64(mult)
	if v >= math.MaxInt64 || v <= math.MinInt64 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	if v != math.Trunc(v) {
		return 0, fmt.Errorf("%q is not a whole number of bytes", s)
	}
	return ByteSize(v), nil
}

// String formats the size with the largest unit that divides it exactly, preferring
// binary units ("4MiB", "10MB"); sizes that fit no unit are plain byte counts ("1234", "-1").
// The result parses back with ParseByteSize.
func (b ByteSize) String() string {
	if b == 0 {
		return "0"
	}
	if b == math.MinInt64 { // its absolute value does not fit in an int64
		return strconv.FormatInt(int64(b), 10)
	}
	sign, abs := "", b
	if b < 0 {
		sign, abs = "-", -b
	}
	for _, u := range []struct {
		size ByteSize
		name string
	}{
		{TiB, "TiB"}, {GiB, "GiB"}, {MiB, "MiB"}, {KiB, "KiB"},
		{TB, "TB"}, {GB, "GB"}, {MB, "MB"}, {KB, "KB"},
	} {
		if abs%u.size == 0 {
			return sign + strconv.FormatInt(int64(abs/u.size), 10) + u.name
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// UnmarshalYAML reads a ByteSize from a YAML integer or size string.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: expected a size (e.g. 4MiB), got %s", n.Line, kindName(n))
	}
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = v
	return nil
}

// MarshalYAML writes the size in its String form, e.g. 4MiB.
func (b ByteSize) MarshalYAML() (any, error) {
	return b.String(), nil
}
