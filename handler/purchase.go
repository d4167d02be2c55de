package handler

import (
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"
)

// purchaseView is the 202 answer. The order id is a decimal string: it is a
// 64-bit snowflake that JavaScript numbers cannot hold exactly.
type purchaseView struct {
	OrderID string `json:"order_id"`
	Status  string `json:"status"`
}

// purchase is the hot path (sale.Purchase): a retried key gets its answer
// again, the sold-out answer allocates nothing.
func (h *Handler) purchase(c *gin.Context, user int64) error {
	id, err := pathID(c)
	if err != nil {
		return h.outcome(err)
	}
	orderID, err := h.Sale.Purchase(c.Request.Context(), id, user, header(c, "Idempotency-Key"))
	if err != nil {
		return h.outcome(err)
	}
	return h.accept(c, orderID)
}

func (h *Handler) accept(c *gin.Context, orderID int64) error {
	h.metrics.outcome("ok").Inc()
	// The purchaseView, written without reflection: this is the answer of
	// every accepted order, and the id is its only variable part.
	var buf [64]byte
	b := append(buf[:0], `{"order_id":"`...)
	b = strconv.AppendInt(b, orderID, 10)
	b = append(b, `","status":"pending"}`...)
	writeJSON(c, http.StatusAccepted, b)
	return nil
}

// jsonContentType is the Content-Type gin's c.JSON sends.
const jsonContentType = "application/json; charset=utf-8"

// jsonContentTypes is that header's value, shared by every answer (the
// header map keeps the slice; nothing appends to it).
var jsonContentTypes = []string{jsonContentType}

// writeJSON writes an answer already in JSON: what c.Data does, without
// boxing a render.Data (an allocation per answer on the crowd's paths).
func writeJSON(c *gin.Context, code int, b []byte) {
	c.Writer.Header()["Content-Type"] = jsonContentTypes
	c.Status(code)
	c.Writer.Write(b) //nolint:errcheck // a client gone is no error of ours
}

// outcome counts a refused purchase by its code and passes the error on.
func (h *Handler) outcome(err error) error {
	p, _ := toProblem(err)
	h.metrics.outcome(p.Code).Inc()
	return err
}
