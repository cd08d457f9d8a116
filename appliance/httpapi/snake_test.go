package httpapi

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/plugins/host"
	"github.com/katka-io/katka/sync/mirror"
)

var snakeCase = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// badKeys walks a decoded JSON value and returns the object keys that are not
// snake_case, with their paths.
func badKeys(v any, path string) []string {
	var bad []string
	switch v := v.(type) {
	case map[string]any:
		if strings.HasSuffix(path, "config.overrides") {
			// Data, not field names: the Kafka topic configs set on the
			// topic under their Kafka names ("retention.ms"), as Kafka tools
			// name them.
			return nil
		}
		for k, e := range v {
			if !snakeCase.MatchString(k) {
				bad = append(bad, path+"."+k)
			}
			bad = append(bad, badKeys(e, path+"."+k)...)
		}
	case []any:
		for i, e := range v {
			bad = append(bad, badKeys(e, fmt.Sprintf("%s[%d]", path, i))...)
		}
	}
	return bad
}

// filled returns a T with every field set to a non-zero value (slices with one
// element, maps with one snake_case key), so omitempty fields are encoded too.
func filled[T any]() T {
	var v T
	fill(reflect.ValueOf(&v).Elem(), 0)
	return v
}

func fill(v reflect.Value, depth int) {
	if depth > 8 || !v.CanSet() {
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(time.Unix(1700000000, 0)))
			return
		}
		for i := range v.NumField() {
			fill(v.Field(i), depth+1)
		}
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), depth+1)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(v.Index(0), depth+1)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		if k.Kind() == reflect.String {
			k.SetString("some_key")
		}
		fill(e, depth+1)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(1)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(1)
	}
}

// TestJSONSnakeCase walks the JSON of every endpoint, answers and errors, and
// of the sync and plugins status (the real types katka serve hands to
// AddStatus, every field set), and asserts every key is snake_case.
func TestJSONSnakeCase(t *testing.T) {
	ls := startLive(t, nil)
	s := ls.s
	s.AddStatus("sync", func() any { return filled[mirror.Status]() })
	s.AddStatus("plugins", func() any { return filled[[]host.Status]() })
	// Every answer type with every field set, omitempty ones included.
	s.AddStatus("types", func() any {
		return []any{filled[apiError](), filled[topicJSON](), filled[produceResp](), filled[fetchResp](), filled[broker.TopicConfig]()}
	})
	steps := []struct {
		method, path, body string
		status             int
	}{
		{"POST", "/v1/topics", `{"name":"t","partitions":2,"retention_ms":86400000,"retention_bytes":-1}`, 201},
		{"POST", "/v1/topics/t/partitions/0/records?acks=all", `{"records":[{"key":"azE=","value":"djE=","headers":[{"key":"h","value":"aA=="}],"timestamp_ms":1700000000000}]}`, 200},
		{"GET", "/v1/topics", "", 200},
		{"GET", "/v1/topics/t", "", 200},
		{"GET", "/v1/topics/t/partitions/0/records?offset=0", "", 200},
		{"GET", "/v1/topics/t/partitions/0/records?offset=9", "", 416},
		{"GET", "/v1/topics/nope", "", 404},
		{"POST", "/v1/topics", `{"name":"x"}`, 415}, // sent as text/plain below
		{"GET", "/v1/status/sync", "", 200},
		{"GET", "/v1/status/plugins", "", 200},
		{"GET", "/v1/status/types", "", 200},
		{"GET", "/v1/status/none", "", 404},
		{"DELETE", "/v1/topics/t", "", 204},
	}
	for _, st := range steps {
		req, _ := http.NewRequest(st.method, ls.url+st.path, strings.NewReader(st.body))
		switch {
		case st.status == 415:
			req.Header.Set("Content-Type", "text/plain")
		case st.body != "":
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != st.status {
			t.Fatalf("%s %s: %d %s, want %d", st.method, st.path, resp.StatusCode, raw, st.status)
		}
		if st.status == 204 {
			continue
		}
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatalf("%s %s: not JSON: %v: %s", st.method, st.path, err, raw)
		}
		if bad := badKeys(v, ""); len(bad) > 0 {
			t.Errorf("%s %s: keys not snake_case: %v in %s", st.method, st.path, bad, raw)
		}
	}
}
