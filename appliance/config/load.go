package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Load returns Default() overlaid with the YAML file at path. An empty path means no
// file: the defaults alone. Keys left out of the file keep their default value; a list
// in the file replaces the default list, and keys left out of a list element are zero.
// A key written with no value (null) sets the field to its zero value.
//
// Loading is strict: an unknown key, a duplicate key or a value of the wrong type is an
// error naming the line and the full field path, e.g.
//
//	config katka.yaml: line 7: storage.fsyncc: unknown key (allowed: fsync, ...)
//
// Load checks only the shape of the file; call Validate for the values.
func Load(path string) (Config, error) {
	cfg := Default()
	if path == "" {
		return cfg, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	if err := overlay(data, &cfg); err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Limits that keep hostile YAML (alias bombs, self-merging anchors) from running away.
const (
	maxDepth = 64
	maxNodes = 1 << 20
)

var (
	durationType = reflect.TypeFor[time.Duration]()
	byteSizeType = reflect.TypeFor[ByteSize]()
)

// overlay decodes one YAML document from data into cfg, field by field.
func overlay(data []byte, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // empty file: defaults only
		}
		return yamlError(err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		return fmt.Errorf("line %d: only one YAML document is allowed", extra.Line)
	case !errors.Is(err, io.EOF):
		return yamlError(err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil
		}
		root = root.Content[0]
	}
	w := walker{}
	return w.walk(root, reflect.ValueOf(cfg).Elem(), "", 0)
}

// yamlError drops the "yaml: " prefix of syntax errors, which already carry the line.
func yamlError(err error) error {
	return errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
}

// walker walks a yaml.Node tree alongside a Go value, assigning leaves as it goes, so
// that every error can name the exact field path.
type walker struct {
	nodes int
}

// walk decodes n into v; path is v's dotted field path ("" at the top level).
func (w *walker) walk(n *yaml.Node, v reflect.Value, path string, depth int) error {
	w.nodes++
	if w.nodes > maxNodes || depth > maxDepth {
		return fmt.Errorf("line %d: %s: document too deeply nested or too many aliases", n.Line, showPath(path))
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return fmt.Errorf("line %d: %s: unresolved alias", n.Line, showPath(path))
		}
		return w.walk(n.Alias, v, path, depth+1)
	}
	t := v.Type()
	if t != durationType && t != byteSizeType {
		switch t.Kind() {
		case reflect.Struct:
			return w.walkStruct(n, v, path, depth)
		case reflect.Slice:
			return w.walkSlice(n, v, path, depth)
		}
	}
	return w.scalar(n, v, path)
}

// field is a struct field reachable by its yaml key.
type field struct {
	key   string
	index int
}

// yamlFields lists t's fields by yaml key, in declaration order.
func yamlFields(t reflect.Type) []field {
	var fs []field
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if key == "-" {
			continue
		}
		if key == "" {
			key = strings.ToLower(f.Name)
		}
		fs = append(fs, field{key: key, index: i})
	}
	return fs
}

// allowedKeys formats the keys of fs for an error message.
func allowedKeys(fs []field) string {
	keys := make([]string, len(fs))
	for i, f := range fs {
		keys[i] = f.key
	}
	return strings.Join(keys, ", ")
}

// walkStruct decodes a mapping into the struct v; keys not in the mapping keep v's value.
func (w *walker) walkStruct(n *yaml.Node, v reflect.Value, path string, depth int) error {
	if isNull(n) {
		return nil // "storage:" with nothing under it changes nothing
	}
	fs := yamlFields(v.Type())
	allowed := allowedKeys(fs)
	isSensors := v.Type() == sensorsType
	if isSensors {
		allowed = strings.Join(append([]string{allowed}, sensorsKeys(v)...), ", ")
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: %s: expected a mapping with keys (%s), got %s",
			n.Line, showPath(path), allowed, kindName(n))
	}
	// Merge keys (<<: *anchor) first, so that keys written here override them.
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!merge" {
			continue
		}
		if err := w.merge(val, v, path, depth); err != nil {
			return err
		}
	}
	seen := make(map[string]int)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			continue
		}
		if k.Kind != yaml.ScalarNode {
			return fmt.Errorf("line %d: %s: a key must be a plain name, got %s", k.Line, showPath(path), kindName(k))
		}
		sub := joinPath(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			return fmt.Errorf("line %d: %s: duplicate key (first at line %d)", k.Line, sub, first)
		}
		seen[k.Value] = k.Line
		idx := -1
		for _, f := range fs {
			if f.key == k.Value {
				idx = f.index
				break
			}
		}
		target := reflect.Value{}
		if idx >= 0 {
			target = v.Field(idx)
		} else if isSensors {
			// An input section: decoded into the input's own config type.
			target, _ = inputField(v, k.Value)
		}
		if !target.IsValid() {
			return fmt.Errorf("line %d: %s: unknown key (allowed: %s)", k.Line, sub, allowed)
		}
		if err := w.walk(val, target, sub, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// merge applies the value of a "<<" key: one mapping, or a list of mappings of which
// the earlier ones win.
func (w *walker) merge(val *yaml.Node, v reflect.Value, path string, depth int) error {
	m := val
	for m.Kind == yaml.AliasNode && m.Alias != nil {
		m = m.Alias
	}
	switch m.Kind {
	case yaml.MappingNode:
		return w.walk(m, v, path, depth+1)
	case yaml.SequenceNode:
		for i := len(m.Content) - 1; i >= 0; i-- {
			e := m.Content[i]
			for e.Kind == yaml.AliasNode && e.Alias != nil {
				e = e.Alias
			}
			if e.Kind != yaml.MappingNode {
				return fmt.Errorf("line %d: %s: << needs a mapping or a list of mappings, got %s", e.Line, showPath(path), kindName(e))
			}
			if err := w.walk(e, v, path, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("line %d: %s: << needs a mapping or a list of mappings, got %s", val.Line, showPath(path), kindName(val))
}

// walkSlice decodes a sequence into the slice v, replacing its contents.
func (w *walker) walkSlice(n *yaml.Node, v reflect.Value, path string, depth int) error {
	if isNull(n) {
		v.SetZero()
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		return fmt.Errorf("line %d: %s: expected a list, got %s", n.Line, showPath(path), kindName(n))
	}
	if len(n.Content) == 0 {
		v.SetZero() // "[]" and an absent list compare equal
		return nil
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, e := range n.Content {
		if err := w.walk(e, s.Index(i), fmt.Sprintf("%s[%d]", path, i), depth+1); err != nil {
			return err
		}
	}
	v.Set(s)
	return nil
}

// scalar decodes a leaf value into v.
func (w *walker) scalar(n *yaml.Node, v reflect.Value, path string) error {
	t := v.Type()
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: %s: expected %s, got %s", n.Line, showPath(path), expected(t), kindName(n))
	}
	if isNull(n) {
		v.SetZero()
		return nil
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("line %d: %s: %s", n.Line, showPath(path), fmt.Sprintf(format, args...))
	}
	s := n.Value
	switch t {
	case durationType:
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			return bad("%q is not a duration (e.g. 30s, 5m, 168h)", s)
		}
		v.SetInt(int64(d))
		return nil
	case byteSizeType:
		b, err := ParseByteSize(s)
		if err != nil {
			return bad("%v", err)
		}
		v.SetInt(int64(b))
		return nil
	}
	switch t.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		switch strings.ToLower(s) {
		case "true", "yes", "on":
			v.SetBool(true)
		case "false", "no", "off":
			v.SetBool(false)
		default:
			return bad("%q is not a boolean (allowed: true, false)", s)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, err := parseInt(s)
		if err != nil {
			return bad("%q is not an integer", s)
		}
		if v.OverflowInt(i) {
			return bad("%s is out of range for a %d-bit integer", s, t.Bits())
		}
		v.SetInt(i)
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(strings.ReplaceAll(s, "_", ""), t.Bits())
		if err != nil {
			return bad("%q is not a number", s)
		}
		v.SetFloat(f)
	default:
		// A field type this walker does not know: a programming error, reported, not panicked.
		return bad("cannot decode into Go type %s", t)
	}
	return nil
}

// parseInt parses a decimal integer, or one prefixed with 0x, 0o or 0b as YAML allows.
func parseInt(s string) (int64, error) {
	t := strings.TrimPrefix(strings.TrimPrefix(s, "+"), "-")
	if len(t) > 2 && t[0] == '0' && strings.ContainsRune("xXoObB", rune(t[1])) {
		return strconv.ParseInt(s, 0, 64)
	}
	return strconv.ParseInt(s, 10, 64)
}

// isNull reports whether n is an explicit or implicit YAML null ("key:", "~", "null").
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// kindName names what a node is, for "got ..." in messages: its kind, or a scalar's quoted value.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		return strconv.Quote(n.Value)
	}
	return "an empty document"
}

// expected names what a Go type needs in YAML, for "expected ..." in messages.
func expected(t reflect.Type) string {
	switch t {
	case durationType:
		return "a duration (e.g. 30s, 5m, 168h)"
	case byteSizeType:
		return "a size (e.g. 4MiB)"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return t.String()
}

// joinPath appends key to a dotted field path.
func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// showPath renders a field path for messages; the root has none.
func showPath(path string) string {
	if path == "" {
		return "(top level)"
	}
	return path
}
