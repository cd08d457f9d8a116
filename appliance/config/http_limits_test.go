package config

import "testing"

// TestHTTPBodyPoolValidation: http.limits.max_in_flight_body_bytes must hold
// at least one body of max_body_bytes, and stays within its range.
func TestHTTPBodyPoolValidation(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*HTTPLimits)
		want   string // "" when valid
	}{
		{"default", func(*HTTPLimits) {}, ""},
		{"equal to one body", func(h *HTTPLimits) { h.MaxInFlightBodyBytes = h.MaxBodyBytes }, ""},
		{"smaller than one body", func(h *HTTPLimits) { h.MaxInFlightBodyBytes = 8 * MiB },
			"http.limits.max_in_flight_body_bytes: 8MiB is less than http.limits.max_body_bytes 16MiB (one body must always fit)"},
		{"too large", func(h *HTTPLimits) { h.MaxInFlightBodyBytes = 17 * GiB },
			"http.limits.max_in_flight_body_bytes: 17GiB is out of range (allowed: 1KiB..16GiB)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.mutate(&c.HTTP.Limits)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && (err == nil || err.Error() != tt.want):
				t.Fatalf("error\n got %v\nwant %q", err, tt.want)
			}
		})
	}
}
