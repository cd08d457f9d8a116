package can

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	canlib "go.einride.tech/can"
)

// frame is one CAN frame with where and when it was seen.
type frame struct {
	ts    time.Time
	iface string
	f     canlib.Frame
}

// errSkip marks a candump line that is valid but carries no classic data frame
// (a remote frame, an error frame, a CAN FD frame); it is counted, not dead-lettered.
var errSkip = errors.New("not a classic CAN data frame")

// parseCandump parses one line of `candump -l` output:
//
//	(1436509052.249713) vcan0 044#2A366C2BBA
//
// An id of 8 hex digits is extended (29 bits); "#R" is a remote frame and
// "##" a CAN FD frame (both errSkip). Words after the frame are ignored.
func parseCandump(line string) (frame, error) {
	var fr frame
	rest, ok := strings.CutPrefix(line, "(")
	if !ok {
		return fr, errors.New("does not start with (timestamp)")
	}
	tsText, rest, ok := strings.Cut(rest, ") ")
	if !ok {
		return fr, errors.New("timestamp is not closed by \") \"")
	}
	ts, err := parseTimestamp(tsText)
	if err != nil {
		return fr, err
	}
	fr.ts = ts
	iface, rest, ok := strings.Cut(rest, " ")
	if !ok || iface == "" {
		return fr, errors.New("no interface and frame after the timestamp")
	}
	fr.iface = iface
	text, _, _ := strings.Cut(strings.TrimSpace(rest), " ")
	idText, data, ok := strings.Cut(text, "#")
	if !ok {
		return fr, fmt.Errorf("frame %q has no '#'", text)
	}
	switch len(idText) {
	case 3:
	case 8:
		fr.f.IsExtended = true
	default:
		return fr, fmt.Errorf("frame %q: id has %d hex digits (allowed: 3, or 8 for extended)", text, len(idText))
	}
	id, err := strconv.ParseUint(idText, 16, 32)
	if err != nil {
		return fr, fmt.Errorf("frame %q: id is not hex", text)
	}
	switch {
	case fr.f.IsExtended && id&0x20000000 != 0:
		return fr, errSkip // error frame (CAN_ERR_FLAG)
	case fr.f.IsExtended && id > canlib.MaxExtendedID, !fr.f.IsExtended && id > canlib.MaxID:
		return fr, fmt.Errorf("frame %q: id out of range", text)
	case strings.HasPrefix(data, "#"), strings.HasPrefix(data, "R"):
		return fr, errSkip // CAN FD or remote frame
	}
	fr.f.ID = uint32(id)
	data = strings.ReplaceAll(data, ".", "")
	if len(data)%2 != 0 || len(data) > 16 {
		return fr, fmt.Errorf("frame %q: data must be 0..8 bytes in hex pairs", text)
	}
	for i := 0; i < len(data); i += 2 {
		hi, lo := unhex(data[i]), unhex(data[i+1])
		if hi > 15 || lo > 15 {
			return fr, fmt.Errorf("frame %q: data is not hex", text)
		}
		fr.f.Data[i/2] = hi<<4 | lo
	}
	fr.f.Length = uint8(len(data) / 2)
	return fr, nil
}

// parseTimestamp parses seconds.microseconds since the epoch.
func parseTimestamp(s string) (time.Time, error) {
	secText, fracText, _ := strings.Cut(s, ".")
	sec, err := strconv.ParseInt(secText, 10, 64)
	if err != nil || sec < 0 || len(fracText) > 9 {
		return time.Time{}, fmt.Errorf("timestamp %q is not seconds.fraction", s)
	}
	var nsec int64
	if fracText != "" {
		f, err := strconv.ParseUint(fracText, 10, 32)
		if err != nil {
			return time.Time{}, fmt.Errorf("timestamp %q is not seconds.fraction", s)
		}
		nsec = int64(f)
		for range 9 - len(fracText) {
			nsec *= 10
		}
	}
	return time.Unix(sec, nsec).UTC(), nil
}

// unhex returns the value of a hex digit, or 255.
func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10
	}
	return 255
}

// formatCandump writes a frame as a candump -l line (without the newline).
func formatCandump(fr frame) string {
	var b strings.Builder
	fmt.Fprintf(&b, "(%d.%06d) %s ", fr.ts.Unix(), fr.ts.Nanosecond()/1000, fr.iface)
	if fr.f.IsExtended {
		fmt.Fprintf(&b, "%08X#", fr.f.ID)
	} else {
		fmt.Fprintf(&b, "%03X#", fr.f.ID)
	}
	fmt.Fprintf(&b, "%X", fr.f.Data[:fr.f.Length])
	return b.String()
}
