package event

import (
	"math"
	"strings"
	"testing"
)

func TestFormatAmount(t *testing.T) {
	t.Parallel()
	tests := []struct {
		minor    int64
		currency string
		want     string
	}{
		{14900, "EUR", "149.00"},
		{4900, "EUR", "49.00"},
		{0, "EUR", "0.00"},
		{1, "EUR", "0.01"},
		{10, "USD", "0.10"},
		{99, "GBP", "0.99"},
		{100, "HUF", "1.00"},
		{500, "JPY", "500"},
		{0, "JPY", "0"},
		{1234567, "KRW", "1234567"},
		{42, "ISK", "42"},
		{-14900, "EUR", "-149.00"},
		{-5, "EUR", "-0.05"},
		{-500, "JPY", "-500"},
		{math.MaxInt64, "EUR", "92233720368547758.07"},
		{math.MinInt64, "EUR", "-92233720368547758.08"},
		{14900, "XXX", "149.00"}, // unknown currency: two decimals
	}
	for _, tt := range tests {
		t.Run(tt.currency+"/"+tt.want, func(t *testing.T) {
			t.Parallel()
			if got := FormatAmount(tt.minor, tt.currency); got != tt.want {
				t.Errorf("FormatAmount(%d, %q) = %q, want %q", tt.minor, tt.currency, got, tt.want)
			}
		})
	}
}

func TestParseAmount(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in       string
		currency string
		want     int64
		wantErr  string // substring of the error; "" means success
	}{
		{"149.00", "EUR", 14900, ""},
		{"49.00", "EUR", 4900, ""},
		{"0.00", "EUR", 0, ""},
		{"0", "EUR", 0, ""},
		{"149", "EUR", 14900, ""},
		{"149.5", "EUR", 14950, ""},
		{"0.01", "USD", 1, ""},
		{"007.10", "USD", 710, ""},
		{"1.00", "HUF", 100, ""},
		{"500", "JPY", 500, ""},
		{"0", "KRW", 0, ""},
		{"92233720368547758.07", "EUR", math.MaxInt64, ""},
		{"9223372036854775807", "JPY", math.MaxInt64, ""},

		{"149.999", "EUR", 0, "more than 2 decimals"},
		{"0.001", "USD", 0, "more than 2 decimals"},
		{"500.0", "JPY", 0, "JPY has none"},
		{"500.", "JPY", 0, "not a whole number"},
		{"-1.00", "EUR", 0, "negative"},
		{"-0", "EUR", 0, "negative"},
		{"+1.00", "EUR", 0, "not a decimal number"},
		{"", "EUR", 0, "empty"},
		{"abc", "EUR", 0, "not a decimal number"},
		{"1,000.00", "EUR", 0, "not a decimal number"},
		{"1 000", "EUR", 0, "not a decimal number"},
		{" 1.00", "EUR", 0, "not a decimal number"},
		{"1.00 ", "EUR", 0, "not a decimal number"},
		{"1e3", "EUR", 0, "not a decimal number"},
		{".50", "EUR", 0, "not a decimal number"},
		{"5.", "EUR", 0, "not a decimal number"},
		{"1.2.3", "EUR", 0, "not a decimal number"},
		{"NaN", "EUR", 0, "not a decimal number"},
		{"Inf", "EUR", 0, "not a decimal number"},
		{"١٢", "EUR", 0, "not a decimal number"}, // non-ASCII digits
		{"92233720368547758.08", "EUR", 0, "too large"},
		{"9223372036854775808", "JPY", 0, "too large"},
		{"99999999999999999999999999", "EUR", 0, "too large"},
		{"1.00", "XXX", 0, "unknown currency"},
		{"1.00", "eur", 0, "unknown currency"},
	}
	for _, tt := range tests {
		t.Run(tt.currency+"/"+tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseAmount(tt.in, tt.currency)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseAmount(%q, %q): unexpected error: %v", tt.in, tt.currency, err)
				}
				if got != tt.want {
					t.Errorf("ParseAmount(%q, %q) = %d, want %d", tt.in, tt.currency, got, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseAmount(%q, %q) = %d, want an error containing %q", tt.in, tt.currency, got, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseAmount(%q, %q) error = %q, want it to contain %q", tt.in, tt.currency, err, tt.wantErr)
			}
		})
	}
}

// FuzzParseAmount checks that every accepted amount is non-negative and
// survives a round trip through FormatAmount.
func FuzzParseAmount(f *testing.F) {
	for _, s := range []string{"149.00", "0", "0.5", "500", "-1", "1e3", "92233720368547758.07", "00.10"} {
		f.Add(s, "EUR")
		f.Add(s, "JPY")
	}
	f.Fuzz(func(t *testing.T, s, currency string) {
		v, err := ParseAmount(s, currency)
		if err != nil {
			return
		}
		if v < 0 {
			t.Fatalf("ParseAmount(%q, %q) = %d, negative", s, currency, v)
		}
		formatted := FormatAmount(v, currency)
		back, err := ParseAmount(formatted, currency)
		if err != nil || back != v {
			t.Fatalf("round trip %q → %d → %q → %d, %v", s, v, formatted, back, err)
		}
	})
}

func TestFormatPrice(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		minor    int64
		currency string
		want     string
	}{
		{14900, "EUR", "€149.00"}, {5, "EUR", "€0.05"}, {149000, "EUR", "€1,490.00"}, {123456789, "USD", "$1,234,567.89"},
		{4900, "GBP", "£49.00"}, {500, "JPY", "¥500"}, {1500000, "JPY", "¥1,500,000"}, {4900, "CHF", "CHF\u00a049.00"},
		{-2500, "EUR", "-€25.00"},
	} {
		if got := FormatPrice(tt.minor, tt.currency); got != tt.want {
			t.Errorf("FormatPrice(%d, %s) = %q, want %q", tt.minor, tt.currency, got, tt.want)
		}
	}
}
