package can

import (
	"fmt"
	"math"
	"os"
	"strconv"

	canlib "go.einride.tech/can"
	"go.einride.tech/can/pkg/dbc"
)

// MaxDBCBytes is the largest DBC file katka reads.
const MaxDBCBytes = 64 << 20

// signal is one decodable signal of a message.
type signal struct {
	name     string
	key      []byte // Message.Signal, the record key in key: signal mode
	start    uint8
	length   uint8
	bigEnd   bool
	signed   bool
	float32  bool
	isMux    bool   // the message's multiplexer switch
	muxed    bool   // present only when the switch has muxValue
	muxValue uint64 // switch value of a multiplexed signal
	factor   float64
	offset   float64
	unit     string
	labels   map[int64]string // value descriptions (VAL_)
	jsonName []byte           // "name" quoted for JSON
	jsonUnit []byte           // "unit" quoted for JSON
	rate     rateRule
	idx      int // index in the input's per-signal state
}

// message is one message of the DBC file.
type message struct {
	name    string
	id      uint32
	length  uint8 // bytes, from the DBC
	signals []*signal
	mux     *signal // the multiplexer switch, or nil
	key     []byte  // the record key in key: message mode
}

// database is the decoding view of a DBC file: messages by CAN id.
type database struct {
	byID    map[uint32]*message // standard ids, and extended ids with bit 31 set
	signals int
}

// frameKey is the database key of a frame id: extended ids get bit 31.
func frameKey(id uint32, extended bool) uint32 {
	if extended {
		return id | 1<<31
	}
	return id
}

// loadDBC reads and checks a DBC file.
func loadDBC(path string) (*database, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("dbc_file: %w", err)
	}
	if fi.Size() > MaxDBCBytes {
		return nil, fmt.Errorf("dbc_file %s: %d bytes (allowed: up to %d)", path, fi.Size(), MaxDBCBytes)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("dbc_file: %w", err)
	}
	db, err := parseDBC(path, data)
	if err != nil {
		return nil, fmt.Errorf("dbc_file %s: %w", path, err)
	}
	return db, nil
}

// parseDBC builds the database from DBC text. A panic of the parser on hostile
// input is returned as an error.
func parseDBC(name string, data []byte) (db *database, err error) {
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("the DBC parser failed: %v", r)
		}
	}()
	p := dbc.NewParser(name, data)
	if perr := p.Parse(); perr != nil {
		return nil, perr
	}
	db = &database{byID: map[uint32]*message{}}
	type sigRef struct {
		id   uint32
		name string
	}
	index := map[sigRef]*signal{}
	for _, d := range p.Defs() {
		md, ok := d.(*dbc.MessageDef)
		if !ok || md.MessageID == dbc.IndependentSignalsMessageID {
			continue
		}
		m := &message{name: string(md.Name), id: md.MessageID.ToCAN(), length: uint8(min(md.Size, 255))}
		m.key = []byte(m.name)
		k := frameKey(m.id, md.MessageID.IsExtended())
		if _, dup := db.byID[k]; dup {
			return nil, fmt.Errorf("line %d: message id %d is defined twice", md.Pos.Line, m.id)
		}
		for _, sd := range md.Signals {
			s := &signal{
				name: string(sd.Name), start: uint8(sd.StartBit), length: uint8(sd.Size),
				bigEnd: sd.IsBigEndian, signed: sd.IsSigned,
				isMux: sd.IsMultiplexerSwitch, muxed: sd.IsMultiplexed, muxValue: sd.MultiplexerSwitch,
				factor: sd.Factor, offset: sd.Offset, unit: sd.Unit,
			}
			if err := checkBits(sd.StartBit, sd.Size, sd.IsBigEndian); err != nil {
				return nil, fmt.Errorf("line %d: signal %s.%s: %w", sd.Pos.Line, m.name, s.name, err)
			}
			if math.IsNaN(s.factor) || math.IsInf(s.factor, 0) || math.IsNaN(s.offset) || math.IsInf(s.offset, 0) {
				return nil, fmt.Errorf("line %d: signal %s.%s: factor and offset must be finite", sd.Pos.Line, m.name, s.name)
			}
			s.key = []byte(m.name + "." + s.name)
			s.jsonName = strconv.AppendQuote(nil, s.name)
			s.jsonUnit = appendJSONString(nil, s.unit)
			if s.isMux {
				m.mux = s
			}
			m.signals = append(m.signals, s)
			index[sigRef{k, s.name}] = s
			db.signals++
		}
		db.byID[k] = m
	}
	for _, d := range p.Defs() {
		switch d := d.(type) {
		case *dbc.ValueDescriptionsDef:
			if d.ObjectType != dbc.ObjectTypeSignal {
				continue
			}
			s := index[sigRef{frameKey(d.MessageID.ToCAN(), d.MessageID.IsExtended()), string(d.SignalName)}]
			if s == nil {
				continue
			}
			s.labels = make(map[int64]string, len(d.ValueDescriptions))
			for _, vd := range d.ValueDescriptions {
				s.labels[int64(vd.Value)] = vd.Description
			}
		case *dbc.SignalValueTypeDef:
			s := index[sigRef{frameKey(d.MessageID.ToCAN(), d.MessageID.IsExtended()), string(d.SignalName)}]
			if s == nil {
				continue
			}
			switch {
			case d.SignalValueType == dbc.SignalValueTypeFloat32 && s.length == 32:
				s.float32 = true
			case d.SignalValueType != dbc.SignalValueTypeInt:
				return nil, fmt.Errorf("line %d: signal %s: value type %d is not supported (allowed: integer, or float32 on 32 bits)", d.Pos.Line, s.key, d.SignalValueType)
			}
		}
	}
	return db, nil
}

// checkBits checks that a signal's bits lie within the 8 bytes of a classic CAN frame.
func checkBits(start, size uint64, bigEndian bool) error {
	if size < 1 || size > 64 || start > 63 {
		return fmt.Errorf("start bit %d, size %d: out of range (allowed: start 0..63, size 1..64)", start, size)
	}
	if !bigEndian {
		if start+size > 64 {
			return fmt.Errorf("start bit %d, size %d: ends beyond bit 63", start, size)
		}
		return nil
	}
	msb := (7-start/8)*8 + start%8 // the bit's index in the frame packed big-endian
	if msb+1 < size {
		return fmt.Errorf("start bit %d, size %d (big-endian): ends beyond the last byte", start, size)
	}
	return nil
}

// raw returns the signal's raw value in d, sign-extended when signed.
func (s *signal) raw(d *canlib.Data) (u uint64, i int64) {
	if s.bigEnd {
		u = d.UnsignedBitsBigEndian(s.start, s.length)
	} else {
		u = d.UnsignedBitsLittleEndian(s.start, s.length)
	}
	if s.signed && s.length < 64 && u&(1<<(s.length-1)) != 0 {
		return u, int64(u | ^uint64(0)<<s.length)
	}
	return u, int64(u)
}

// physical returns the signal's physical value (raw * factor + offset) and its
// raw integer, for value descriptions.
func (s *signal) physical(d *canlib.Data) (float64, int64) {
	u, i := s.raw(d)
	switch {
	case s.float32:
		return float64(math.Float32frombits(uint32(u)))*s.factor + s.offset, i
	case s.signed:
		return float64(i)*s.factor + s.offset, i
	}
	return float64(u)*s.factor + s.offset, i
}

// fits reports whether the signal's bits lie within a frame of n data bytes.
func (s *signal) fits(n uint8) bool {
	if !s.bigEnd {
		return int(s.start)+int(s.length) <= 8*int(n)
	}
	msb := int(7-s.start/8)*8 + int(s.start%8)
	lsb := msb - int(s.length) + 1
	return lsb >= 64-8*int(n)
}
