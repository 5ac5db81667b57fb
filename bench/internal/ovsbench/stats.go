package ovsbench

import (
	"encoding/json"
	"os"
	"sort"
	"time"
)

// Median of xs (0 for none).
func Median(xs []float64) float64 { return Percentile(xs, 50) }

// Percentile (nearest rank) of xs.
func Percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	k := int(p/100*float64(len(s))+0.999999) - 1
	if k < 0 {
		k = 0
	}
	if k >= len(s) {
		k = len(s) - 1
	}
	return s[k]
}

// Ms converts a duration to milliseconds.
func Ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// WriteJSON writes v to path (no-op for "").
func WriteJSON(path string, v any) error {
	if path == "" {
		return nil
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
