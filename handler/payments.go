package handler

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"seckill/order"
)

// SignatureHeader carries a payment provider's callback signature:
// "sha256=" and the lower-case hex HMAC-SHA256 of the raw body under the
// shared secret (payments.callback_secret).
const SignatureHeader = "X-Payment-Signature"

// signaturePrefix starts SignatureHeader's value.
const signaturePrefix = "sha256="

// maxCallbackBody bounds a callback's body: its fields fit in a few hundred
// bytes, and it is read whole before its signature is checked.
const maxCallbackBody = 4 << 10

// Payments configures the payment routes.
type Payments struct {
	// CallbackSecret is the secret shared with the payment provider; ""
	// turns the callback off (404).
	CallbackSecret string
	// CallbackWindow is how far a callback's timestamp may lie from now,
	// either way: an older one is a replay or too late, a newer one a
	// wrong clock. 5 minutes when 0.
	CallbackWindow time.Duration
	// DemoPay turns on the buyer's pay button (POST /orders/{id}/pay), for
	// the demo: off, it answers 404 and orders are paid by callback only.
	DemoPay bool
}

// defaultCallbackWindow is Payments.CallbackWindow's default.
const defaultCallbackWindow = 5 * time.Minute

// The payment routes' own problems.
var (
	errDemoPayOff = newProblem(http.StatusNotFound, CodeNotFound,
		"the demo pay route is off (payments.demo_pay); orders are paid by the payment provider's callback")
	errCallbackOff = newProblem(http.StatusNotFound, CodeNotFound,
		"payment callbacks are not configured (payments.callback_secret)")
	errBadSignature = signatureProblem(CodeBadSignature,
		"the "+SignatureHeader+" header is missing or is not the HMAC-SHA256 of the body")
	errStaleCallback = signatureProblem(CodeStaleCallback,
		"the callback's timestamp is outside the accepted window; a replayed or delayed callback is refused")
)

// signatureProblem is a 401 whose challenge names the callback's scheme.
func signatureProblem(code, detail string) *Problem {
	p := newProblem(http.StatusUnauthorized, code, detail)
	p.challenge = []string{`HMAC-SHA256 realm="seckill-payments", header="` + SignatureHeader + `"`}
	return p
}

// callbackRequest is a payment provider's report. The order id is a
// decimal string, as the API writes it; amount_minor is in minor units.
type callbackRequest struct {
	TransactionID string     `json:"transaction_id"`
	OrderID       string     `json:"order_id"`
	AmountMinor   *int64     `json:"amount_minor"`
	Currency      string     `json:"currency"`
	Timestamp     *timestamp `json:"timestamp"`
}

// callbackAnswer is the callback's 200: the same for every repeat of a
// transaction (a repeat also gets Idempotent-Replayed: true).
type callbackAnswer struct {
	TransactionID string `json:"transaction_id"`
	OrderID       string `json:"order_id"`
	// Outcome: paid, or refund_required (the order was cancelled or paid
	// already; the money must go back).
	Outcome     string `json:"outcome"`
	AmountMinor int64  `json:"amount_minor"`
	Currency    string `json:"currency"`
}

// validTxID: 1 to 64 bytes of letters, digits and "-_.:", as providers
// spell their ids; anything else is not one.
func validTxID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || strings.IndexByte("-_.:", b) >= 0) {
			return false
		}
	}
	return true
}

// verifySignature checks the body's HMAC against the header, in constant
// time.
func verifySignature(secret, body []byte, hdr string) bool {
	sig, ok := strings.CutPrefix(hdr, signaturePrefix)
	if !ok {
		return false
	}
	got, err := hex.DecodeString(sig)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}

// paymentCallback is POST /payments/callback: authenticated by its
// signature (checked before the body is parsed: an unsigned body is not
// read), fresh by its timestamp, then applied once per transaction id
// (sale.ApplyPayment).
func (h *Handler) paymentCallback(c *gin.Context) error {
	err := h.callback(c)
	if err != nil {
		p, _ := toProblem(err)
		h.payStats.callbacks.WithLabelValues(p.Code).Inc()
	}
	return err
}

func (h *Handler) callback(c *gin.Context) error {
	if h.Payments.CallbackSecret == "" {
		return errCallbackOff
	}
	if mt, _, err := mime.ParseMediaType(header(c, "Content-Type")); err != nil || mt != "application/json" {
		return errNotJSON
	}
	body, err := readBody(c, maxCallbackBody)
	if err != nil {
		return err
	}
	if !verifySignature([]byte(h.Payments.CallbackSecret), body, header(c, SignatureHeader)) {
		return errBadSignature
	}
	var req callbackRequest
	if err := decodeBody(body, &req); err != nil {
		return err
	}
	orderID, ok := positiveID(req.OrderID)
	switch {
	case !validTxID(req.TransactionID):
		return invalid("transaction_id is required: 1 to 64 letters, digits or -_.:")
	case !ok:
		return invalid("order_id must be a positive integer in a string")
	case req.AmountMinor == nil:
		return invalid("amount_minor is required")
	case *req.AmountMinor < 1 || *req.AmountMinor > order.MaxPriceMinor:
		return invalid("amount_minor must be between 1 and " + strconv.FormatInt(order.MaxPriceMinor, 10))
	case order.CheckCurrency(req.Currency) != nil:
		return invalid("currency must be an ISO 4217 code in upper case, such as EUR or USD")
	case req.Timestamp == nil:
		return invalid("timestamp is required")
	}
	window := h.Payments.CallbackWindow
	if window <= 0 {
		window = defaultCallbackWindow
	}
	if d := h.Now().Sub(req.Timestamp.Time); d > window || d < -window {
		return errStaleCallback
	}
	r, err := h.Sale.ApplyPayment(c.Request.Context(), order.Payment{
		TxID: req.TransactionID, OrderID: orderID, AmountMinor: *req.AmountMinor, Currency: req.Currency,
	})
	if err != nil {
		return err
	}
	switch {
	case r.Repeated:
		h.payStats.callbacks.WithLabelValues("repeated").Inc()
		c.Header("Idempotent-Replayed", "true")
	case r.Outcome == order.PaymentPaid:
		h.payStats.callbacks.WithLabelValues(r.Outcome).Inc()
		h.payStats.revenue(req.Currency).Add(float64(*req.AmountMinor))
	default:
		h.payStats.callbacks.WithLabelValues(r.Outcome).Inc()
		h.payStats.refunds.Inc()
	}
	c.JSON(http.StatusOK, callbackAnswer{TransactionID: req.TransactionID, OrderID: req.OrderID,
		Outcome: r.Outcome, AmountMinor: *req.AmountMinor, Currency: req.Currency})
	return nil
}

// cancelOrder is POST /orders/{id}/cancel: the buyer gives a pending order
// back (sale.Cancel).
func (h *Handler) cancelOrder(c *gin.Context, user int64) error {
	id, err := pathID(c)
	if err != nil {
		return err
	}
	o, err := h.Sale.Cancel(c.Request.Context(), id, user)
	if err != nil {
		return err
	}
	c.JSON(http.StatusOK, viewOf(o))
	return nil
}

// payMetrics count the payment routes' outcomes and the money taken.
type payMetrics struct {
	// callbacks by result: paid, refund_required, repeated, or the
	// problem code of a refusal (a bounded set).
	callbacks *prometheus.CounterVec
	// refunds counts late payments moved to refund_required (alerted).
	refunds prometheus.Counter
	// revenueMinor: amounts of payments that paid an order, by currency
	// (ISO codes: bounded).
	revenueMinor *prometheus.CounterVec
}

func (m *payMetrics) revenue(cur string) prometheus.Counter {
	if cur == "" {
		cur = "none"
	}
	return m.revenueMinor.WithLabelValues(cur)
}

func newPayMetrics(reg prometheus.Registerer) (*payMetrics, error) {
	m := &payMetrics{
		callbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "seckill_payment_callbacks_total",
			Help: "Payment provider callbacks by result: paid, refund_required, repeated, or the problem code of a refusal.",
		}, []string{"result"}),
		refunds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "seckill_refunds_required_total",
			Help: "Payments that arrived for a cancelled or expired order (or one paid already): kept as refund_required, the order not revived.",
		}),
		revenueMinor: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "seckill_revenue_minor_total",
			Help: "Amounts (minor units) of payments that paid an order, by currency.",
		}, []string{"currency"}),
	}
	for _, c := range []prometheus.Collector{m.callbacks, m.refunds, m.revenueMinor} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
