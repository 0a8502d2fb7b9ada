package email

import "github.com/registrar/registrar/internal/event"

// formatMoney writes a decimal amount ("1490.00") in a currency ("EUR") for
// people, as event.FormatPrice does: "€1,490.00". An amount that is not a
// plain decimal of the currency is shown as given, followed by its code.
func formatMoney(amount, currency string) string {
	minor, err := event.ParseAmount(amount, currency)
	if err != nil {
		return amount + " " + currency
	}
	return event.FormatPrice(minor, currency)
}
