package event

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// exponents holds the ISO 4217 minor-unit exponent (the number of decimals)
// of the currencies an event may be priced in.
var exponents = map[string]int{
	"AUD": 2, "BRL": 2, "CAD": 2, "CHF": 2, "CZK": 2, "DKK": 2, "EUR": 2,
	"GBP": 2, "HKD": 2, "HUF": 2, "INR": 2, "MXN": 2, "NOK": 2, "NZD": 2,
	"PLN": 2, "SEK": 2, "SGD": 2, "USD": 2, "ZAR": 2,
	"ISK": 0, "JPY": 0, "KRW": 0,
}

// exponent reports the number of decimals of currency, and whether the
// currency is known.
func exponent(currency string) (int, bool) {
	exp, ok := exponents[currency]
	return exp, ok
}

// FormatAmount formats an amount held in minor units as a decimal string with
// the currency's number of decimals: 14900 EUR is "149.00", 500 JPY is "500".
// An unknown currency is formatted with two decimals.
func FormatAmount(minor int64, currency string) string {
	exp, ok := exponent(currency)
	if !ok {
		exp = 2
	}
	var u uint64
	sign := ""
	if minor < 0 {
		sign = "-"
		u = uint64(-(minor + 1)) + 1 // no overflow for math.MinInt64
	} else {
		u = uint64(minor)
	}
	digits := strconv.FormatUint(u, 10)
	if exp == 0 {
		return sign + digits
	}
	if len(digits) <= exp {
		digits = strings.Repeat("0", exp-len(digits)+1) + digits
	}
	cut := len(digits) - exp
	return sign + digits[:cut] + "." + digits[cut:]
}

// ParseAmount parses a non-negative decimal string such as "149.00" into minor
// units of currency (14900 for EUR). It accepts at most the currency's number
// of decimals ("149" and "149.5" are fine for EUR, "149.999" is not; JPY takes
// no decimals) and rejects signs, exponents, spaces, separators and amounts
// that do not fit in an int64. It never uses floating point.
func ParseAmount(s string, currency string) (int64, error) {
	exp, ok := exponent(currency)
	if !ok {
		return 0, fmt.Errorf("unknown currency %q", currency)
	}
	example := "149"
	if exp > 0 {
		example += "." + strings.Repeat("0", exp)
	}
	if s == "" {
		return 0, fmt.Errorf("amount is empty; use a decimal like %q", example)
	}
	if s[0] == '-' {
		return 0, fmt.Errorf("amount %q is negative; use 0 or more", s)
	}
	whole, frac, hasPoint := strings.Cut(s, ".")
	if !allDigits(whole) || (hasPoint && !allDigits(frac)) {
		if exp == 0 {
			return 0, fmt.Errorf("amount %q is not a whole number; use digits only, like %q", s, example)
		}
		return 0, fmt.Errorf("amount %q is not a decimal number; use digits with at most %d decimals, like %q", s, exp, example)
	}
	if len(frac) > exp {
		if exp == 0 {
			return 0, fmt.Errorf("amount %q has decimals, but %s has none; use a whole number like %q", s, currency, example)
		}
		return 0, fmt.Errorf("amount %q has more than %d decimals, the most %s allows", s, exp, currency)
	}
	digits := strings.TrimLeft(whole+frac+strings.Repeat("0", exp-len(frac)), "0")
	if digits == "" {
		return 0, nil
	}
	v, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return 0, fmt.Errorf("amount %q is too large", s)
		}
		return 0, fmt.Errorf("amount %q is not a decimal number", s)
	}
	return v, nil
}

// allDigits reports whether s is a non-empty run of ASCII digits.
func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// currencySymbols are the signs people know prices by; other currencies
// are written with their code ("CHF 149.00"). A dollar other than the US
// one carries its country ("CA$149.00").
var currencySymbols = map[string]string{
	"EUR": "€", "GBP": "£", "USD": "$", "JPY": "¥", "INR": "₹", "KRW": "₩",
	"AUD": "A$", "CAD": "CA$", "NZD": "NZ$", "HKD": "HK$", "SGD": "S$", "MXN": "MX$", "BRL": "R$",
}

// FormatPrice writes an amount in minor units for people: "€149.00",
// "€1,490.00", "¥500", "CHF 49.00" (with a no-break space). The API and the
// exports keep FormatAmount's plain decimals.
func FormatPrice(minor int64, currency string) string {
	amount := FormatAmount(minor, currency)
	sign := ""
	if strings.HasPrefix(amount, "-") {
		sign, amount = "-", amount[1:]
	}
	whole, frac, _ := strings.Cut(amount, ".")
	var b strings.Builder
	for i, c := range whole {
		if i > 0 && (len(whole)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if frac != "" {
		b.WriteString("." + frac)
	}
	if sym, ok := currencySymbols[currency]; ok {
		return sign + sym + b.String()
	}
	return sign + currency + "\u00a0" + b.String()
}
