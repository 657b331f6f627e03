package orgsync

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"

	pkgHTTP "github.com/apache/apisix-go-plugin-runner/pkg/http"

	"github.com/apisix-identity-runner/apisix-identity-runner/internal/identity"
)

// maxInvalidateBodyBytes caps the body the invalidation route asks APISIX
// for. An admin event or a list of user ids is a few KB; 64 KiB leaves room
// without letting an unauthenticated caller make the runner read large
// bodies (the signature can only be checked once the body is read).
const maxInvalidateBodyBytes = 64 << 10

// Reasons the invalidation route refuses a body before reading it.
const (
	ReasonLengthRequired = "length_required"
	ReasonBodyTooLarge   = "body_too_large"
)

// refuseUnreadableBody decides from the request headers alone, before any
// byte of the body is asked for, whether the body may be read: it must
// declare its length in one Content-Length of at most maxBytes. Otherwise it
// answers 411 (no usable length) or 413 (too large) and reports true.
//
// A body without Content-Length is refused, not read up to the cap: the
// runner can only ask APISIX for the whole body. That covers HTTP/1.1
// "Transfer-Encoding: chunked" (the header comes instead of a length, and
// when both are sent the length does not describe the body) and HTTP/2
// requests sent without content-length; webhook senders set the header.
func refuseUnreadableBody(w http.ResponseWriter, h pkgHTTP.Header, maxBytes int64) bool {
	// The detail is for the tests and the debug log; the client gets the reason.
	status, reason, _ := bodyLengthVerdict(h.View(), maxBytes)
	if status == 0 {
		return false
	}
	identity.Refuse(w, status, reason)
	return true
}

// bodyLengthVerdict is refuseUnreadableBody's decision: status 0 when the
// body may be read.
func bodyLengthVerdict(h http.Header, maxBytes int64) (status int, reason, detail string) {
	lengthRequired := func(detail string) (int, string, string) {
		return http.StatusLengthRequired, ReasonLengthRequired, detail
	}
	if len(h.Values("Transfer-Encoding")) > 0 {
		return lengthRequired("send the body with a Content-Length, not a Transfer-Encoding")
	}
	values := h.Values("Content-Length")
	if len(values) == 0 {
		return lengthRequired("Content-Length is required")
	}
	if len(values) > 1 {
		return lengthRequired("send one Content-Length")
	}
	n, ok := parseContentLength(values[0])
	if !ok {
		return lengthRequired("Content-Length must be a decimal number of bytes")
	}
	if n > maxBytes {
		return http.StatusRequestEntityTooLarge, ReasonBodyTooLarge,
			fmt.Sprintf("the body may have at most %d bytes", maxBytes)
	}
	return 0, "", ""
}

// parseContentLength accepts 1*DIGIT (RFC 9110, 8.6), nothing else: no
// sign, no spaces inside, no list.
func parseContentLength(v string) (int64, bool) {
	v = strings.TrimSpace(v)
	if v == "" || strings.TrimLeft(v, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil { // only digits: out of int64's range, so too large
		return math.MaxInt64, true
	}
	return n, true
}
