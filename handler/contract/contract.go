// Package contract makes handler/openapi.yaml executable for tests: every
// request/response pair a test sees is checked against the spec, so the
// code and its description cannot drift apart unnoticed.
//
// Only tests import it: it reads the spec from the source tree and pulls in
// a validator the service itself does not need.
package contract

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// Validator checks exchanges against one OpenAPI document.
type Validator struct {
	doc     *openapi3.T
	router  routers.Router
	problem *openapi3.Schema
}

// New parses and validates an OpenAPI document. A spec that does not
// validate is itself a broken contract.
func New(spec []byte) (*Validator, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(spec)
	if err != nil {
		return nil, fmt.Errorf("contract: load spec: %w", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("contract: invalid spec: %w", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("contract: route spec: %w", err)
	}
	ref := doc.Components.Schemas["Problem"]
	if ref == nil || ref.Value == nil {
		return nil, errors.New("contract: spec has no Problem schema")
	}
	return &Validator{doc: doc, router: router, problem: ref.Value}, nil
}

var (
	defaultOnce sync.Once
	defaultV    *Validator
	defaultErr  error
)

// Default is the validator of handler/openapi.yaml, found next to this
// package's source, loaded once per test binary.
func Default(tb testing.TB) *Validator {
	tb.Helper()
	defaultOnce.Do(func() {
		_, file, _, ok := runtime.Caller(0)
		if !ok {
			defaultErr = errors.New("contract: cannot locate the package source")
			return
		}
		spec, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "openapi.yaml"))
		if err != nil {
			defaultErr = fmt.Errorf("contract: %w", err)
			return
		}
		defaultV, defaultErr = New(spec)
	})
	if defaultErr != nil {
		tb.Fatal(defaultErr)
	}
	return defaultV
}

// Exchange is one request and the answer it got, bodies read in full.
type Exchange struct {
	Request     *http.Request
	RequestBody []byte
	Status      int
	Header      http.Header
	Body        []byte
}

// Check tells how the exchange departs from the spec; nil when it does
// not. A request the spec refuses must get a 4xx the operation documents:
// tests send bad input on purpose, and the server may only turn it away.
func (v *Validator) Check(ctx context.Context, x Exchange) error {
	req := x.Request.Clone(ctx)
	req.Body = io.NopCloser(bytes.NewReader(x.RequestBody))
	route, params, err := v.router.FindRoute(req)
	if err != nil {
		return v.checkUnrouted(x)
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: bearerPresent}}
	if err := openapi3filter.ValidateRequest(ctx, in); err != nil && (x.Status < 400 || x.Status > 499) {
		return fmt.Errorf("status %d for a request the spec refuses (%v)", x.Status, err)
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: x.Status, Header: x.Header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true}}
	out.SetBodyBytes(x.Body)
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		return err
	}
	return checkProblem(x)
}

// checkUnrouted: a path or method the spec does not list is documented as
// a 404 not_found problem.
func (v *Validator) checkUnrouted(x Exchange) error {
	if x.Status != http.StatusNotFound {
		return fmt.Errorf("status %d for an undocumented route, want the documented 404", x.Status)
	}
	if !isProblem(x.Header) {
		return fmt.Errorf("content type %q for an undocumented route, want application/problem+json", x.Header.Get("Content-Type"))
	}
	var body any
	if err := json.Unmarshal(x.Body, &body); err != nil {
		return fmt.Errorf("404 body is not JSON: %v", err)
	}
	if err := v.problem.VisitJSON(body, openapi3.EnableJSONSchema2020(), openapi3.VisitAsResponse()); err != nil {
		return fmt.Errorf("404 body does not match Problem: %w", err)
	}
	return checkProblem(x)
}

// checkProblem holds what the Problem schema cannot say: the body repeats
// the HTTP status and its reason phrase.
func checkProblem(x Exchange) error {
	if !isProblem(x.Header) {
		return nil
	}
	var p struct {
		Status int    `json:"status"`
		Title  string `json:"title"`
	}
	if err := json.Unmarshal(x.Body, &p); err != nil {
		return fmt.Errorf("problem body is not JSON: %v", err)
	}
	if p.Status != x.Status || p.Title != http.StatusText(x.Status) {
		return fmt.Errorf("problem says %d %q, the answer is %d %q", p.Status, p.Title, x.Status, http.StatusText(x.Status))
	}
	if cc := x.Header.Get("Cache-Control"); cc != "no-store" {
		return fmt.Errorf("problem Cache-Control %q, want no-store", cc)
	}
	return nil
}

func isProblem(h http.Header) bool {
	mt, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	return mt == "application/problem+json"
}

// bearerPresent is the spec's view of its bearer schemes: a request
// without a bearer token does not meet them. Whether the token is right is
// the server's business, answered with the documented 401.
func bearerPresent(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	scheme, cred, ok := strings.Cut(in.RequestValidationInput.Request.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(cred) == "" {
		return errors.New("no bearer token")
	}
	return nil
}

// report fails tb when the exchange breaks the contract.
func (v *Validator) report(tb testing.TB, x Exchange) {
	if err := v.Check(context.Background(), x); err != nil {
		// The validator's errors repeat the schema and value in full: the
		// start of each says what is wrong.
		tb.Errorf("contract: %s %s -> %d: %s\nresponse body: %s", x.Request.Method, x.Request.URL.RequestURI(), x.Status,
			excerpt([]byte(err.Error()), 1024), excerpt(x.Body, 512))
	}
}

// excerpt is the first n bytes of b, enough to see what it says.
func excerpt(b []byte, n int) []byte {
	if len(b) > n {
		return append(b[:n:n], "…"...)
	}
	return b
}

// Transport wraps base (http.DefaultTransport when nil) so that every
// response a client gets is checked; a mismatch fails tb. Safe for
// concurrent use, as tb.Errorf is.
func Transport(tb testing.TB, base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{tb: tb, base: base, v: Default(tb)}
}

type transport struct {
	tb   testing.TB
	base http.RoundTripper
	v    *Validator
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	reqBody, err := drain(req.Body)
	if err != nil {
		return nil, err
	}
	// A RoundTripper must not change the caller's request: send a copy
	// carrying the bytes just read.
	out := req.Clone(req.Context())
	out.Body = io.NopCloser(bytes.NewReader(reqBody))
	resp, err := t.base.RoundTrip(out)
	if err != nil {
		return resp, err
	}
	body, err := drain(resp.Body)
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	t.v.report(t.tb, Exchange{Request: req, RequestBody: reqBody, Status: resp.StatusCode, Header: resp.Header, Body: body})
	return resp, nil
}

// Handler wraps an http.Handler (a gin engine) so that every answer it
// writes is checked; a mismatch fails tb.
func Handler(tb testing.TB, next http.Handler) http.Handler {
	v := Default(tb)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqBody, err := drain(r.Body)
		if err != nil {
			tb.Fatalf("contract: read request body: %v", err)
		}
		r.Body = io.NopCloser(bytes.NewReader(reqBody))
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		res := rec.Result()
		v.report(tb, Exchange{Request: r, RequestBody: reqBody, Status: res.StatusCode, Header: res.Header, Body: rec.Body.Bytes()})
		for k, vs := range res.Header {
			w.Header()[k] = vs
		}
		w.WriteHeader(res.StatusCode)
		_, _ = w.Write(rec.Body.Bytes())
	})
}

// drain reads and closes a body; nil reads as empty.
func drain(rc io.ReadCloser) ([]byte, error) {
	if rc == nil || rc == http.NoBody {
		return nil, nil
	}
	defer rc.Close()
	return io.ReadAll(rc)
}
