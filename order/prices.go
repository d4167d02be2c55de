package order

import (
	"errors"
	"fmt"

	"golang.org/x/text/currency"
)

// MaxPriceMinor bounds a price and a payment's amount, in minor units: a
// trillion cents is far above any one unit's price, and far below the point
// where sums of many orders (revenue, int64) or their float64 metric lose
// precision.
const MaxPriceMinor int64 = 1_000_000_000_000

// Why a price or an amount is refused, for the API's messages.
var (
	ErrPriceRange      = fmt.Errorf("amount must be between 1 and %d minor units", MaxPriceMinor)
	ErrUnknownCurrency = errors.New("currency must be an ISO 4217 code of three upper-case letters")
)

// CheckPrice reports whether amount (minor units) in cur is a valid price
// or payment: positive, at most MaxPriceMinor, and cur an ISO 4217 code
// (golang.org/x/text's table), spelt upper-case, that names money: XXX (no
// currency) and XTS (testing) are refused.
func CheckPrice(amount int64, cur string) error {
	if amount < 1 || amount > MaxPriceMinor {
		return ErrPriceRange
	}
	return CheckCurrency(cur)
}

// CheckCurrency is CheckPrice's rule for the currency alone.
func CheckCurrency(cur string) error {
	if len(cur) != 3 || cur == "XXX" || cur == "XTS" {
		return ErrUnknownCurrency
	}
	for i := range 3 {
		if cur[i] < 'A' || cur[i] > 'Z' {
			return ErrUnknownCurrency
		}
	}
	if _, err := currency.ParseISO(cur); err != nil {
		return ErrUnknownCurrency
	}
	return nil
}
