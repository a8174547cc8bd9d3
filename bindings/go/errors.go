package promotiongates

// #include "promotion_gates.h"
import "C"

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/promotion-gates/promotion-gates/bindings/go/internal/shown"
)

// Status mirrors the C enum pgate_status. The numbers are part of the ABI: they never change
// and are never reused.
type Status uint32

// The status codes of the C ABI, in the header's order.
const (
	StatusOK                Status = C.PGATE_STATUS_OK                  // success
	StatusNullPointer       Status = C.PGATE_STATUS_NULL_POINTER        // a required pointer was NULL
	StatusInvalidArgument   Status = C.PGATE_STATUS_INVALID_ARGUMENT    // out of range, not UTF-8, negative latency
	StatusInvalidConfig     Status = C.PGATE_STATUS_INVALID_CONFIG      // validation refused a value; the message names the field
	StatusInvalidJSON       Status = C.PGATE_STATUS_INVALID_JSON        // a JSON document could not be read
	StatusInvalidPromotion  Status = C.PGATE_STATUS_INVALID_PROMOTION   // no such edge in the release state machine
	StatusSLONotMet         Status = C.PGATE_STATUS_SLO_NOT_MET         // gated promotion refused: not compliant
	StatusInsufficientData  Status = C.PGATE_STATUS_INSUFFICIENT_DATA   // gated promotion refused: too little data
	StatusAlreadyThere      Status = C.PGATE_STATUS_ALREADY_THERE       // already in the requested environment
	StatusInvalidFlag       Status = C.PGATE_STATUS_INVALID_FLAG        // a feature flag name is invalid
	StatusFlagNotEnabled    Status = C.PGATE_STATUS_FLAG_NOT_ENABLED    // the flag to disable is not enabled
	StatusRollbackRefused   Status = C.PGATE_STATUS_ROLLBACK_REFUSED    // rollback in Production, or without a reason
	StatusBufferTooSmall    Status = C.PGATE_STATUS_BUFFER_TOO_SMALL    // a text still growing after 8 reads (or evidence over PGATE_EVIDENCE_CAPACITY); else handled inside the binding
	StatusInvalidHandle     Status = C.PGATE_STATUS_INVALID_HANDLE      // the gate is closed (or was never opened)
	StatusPanic             Status = C.PGATE_STATUS_PANIC               // the library panicked or an internal invariant failed: a bug, please report it
	StatusIndexOutOfRange   Status = C.PGATE_STATUS_INDEX_OUT_OF_RANGE  // an index beyond the end of a list
	StatusUnknownFlagSet    Status = C.PGATE_STATUS_UNKNOWN_FLAG_SET    // a stale or foreign decision's flag set
	StatusFlagSetsExhausted Status = C.PGATE_STATUS_FLAG_SETS_EXHAUSTED // every flag-set number given out, or MAX_FLAG_NAMES distinct names held
	StatusStore             Status = C.PGATE_STATUS_STORE               // the state store failed, or another process wrote first
	StatusStageChanged      Status = C.PGATE_STATUS_STAGE_CHANGED       // PromoteFrom refused: the gate left the stage read; nothing changed
	StatusGateChanged       Status = C.PGATE_STATUS_GATE_CHANGED        // SwapConfigFrom refused: the gate changed since the change count read; nothing changed
)

// statusNames are the library's names of the statuses (pgate_status_str), read once so that
// String costs no cgo call.
var statusNames = func() (names [StatusGateChanged + 1]string) {
	for s := range names {
		names[s] = C.GoString(C.pgate_status_str(C.uint32_t(s)))
	}
	return names
}()

// String returns the C name of the status, e.g. "PGATE_STATUS_SLO_NOT_MET".
func (s Status) String() string {
	return enumName(statusNames[:], uint32(s), "PGATE_STATUS_UNKNOWN")
}

// Error is the error every method returns: the library's status and, where the C call
// explains itself, its message (which names the field, value or evidence).
//
// Match a kind of failure with errors.Is and the sentinels below, or read the fields with
// errors.As:
//
//	if errors.Is(err, promotiongates.ErrInsufficientData) { /* wait for more samples */ }
//	var pe *promotiongates.Error
//	if errors.As(err, &pe) { log.Print(pe.Status, pe.Message) }
type Error struct {
	Status  Status // what kind of failure
	Message string // the library's explanation; the operation's name when the C call has none
}

// Error formats the message and the status name.
func (e *Error) Error() string {
	if e.Message == "" {
		return "promotiongates: " + e.Status.String()
	}
	return "promotiongates: " + e.Message + " (" + e.Status.String() + ")"
}

// Is reports whether target is a sentinel (an *Error without a message) of the same status,
// so that errors.Is(err, ErrSLONotMet) works whatever the message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Status == e.Status
}

// Sentinels for errors.Is, one per failure status.
var (
	ErrNullPointer       = &Error{Status: StatusNullPointer}
	ErrInvalidArgument   = &Error{Status: StatusInvalidArgument}
	ErrInvalidConfig     = &Error{Status: StatusInvalidConfig}
	ErrInvalidJSON       = &Error{Status: StatusInvalidJSON}
	ErrInvalidPromotion  = &Error{Status: StatusInvalidPromotion}
	ErrSLONotMet         = &Error{Status: StatusSLONotMet}
	ErrInsufficientData  = &Error{Status: StatusInsufficientData}
	ErrAlreadyThere      = &Error{Status: StatusAlreadyThere}
	ErrInvalidFlag       = &Error{Status: StatusInvalidFlag}
	ErrFlagNotEnabled    = &Error{Status: StatusFlagNotEnabled}
	ErrRollbackRefused   = &Error{Status: StatusRollbackRefused}
	ErrBufferTooSmall    = &Error{Status: StatusBufferTooSmall}
	ErrInvalidHandle     = &Error{Status: StatusInvalidHandle}
	ErrPanic             = &Error{Status: StatusPanic}
	ErrIndexOutOfRange   = &Error{Status: StatusIndexOutOfRange}
	ErrUnknownFlagSet    = &Error{Status: StatusUnknownFlagSet}
	ErrFlagSetsExhausted = &Error{Status: StatusFlagSetsExhausted}
	ErrStore             = &Error{Status: StatusStore}
	ErrStageChanged      = &Error{Status: StatusStageChanged}
	ErrGateChanged       = &Error{Status: StatusGateChanged}

	// ErrClosed matches every call on a Gate after Close (or on a nil *Gate). It is
	// ErrInvalidHandle: the status the library itself gives a freed handle.
	ErrClosed = ErrInvalidHandle
)

// errClosed is returned by every method of a closed gate.
var errClosed error = &Error{Status: StatusInvalidHandle, Message: "the gate is closed"}

// maxShownValueBytes is the library's MAX_SHOWN_VALUE_BYTES (src/error.rs): the most bytes of
// a refused value an error message shows.
const maxShownValueBytes = 160

// quoted shows a refused text in an error message as the library does: quoted, and when
// longer than maxShownValueBytes, its first bytes (cut at a character's start) quoted and
// followed by ...(N bytes), so that a huge argument never makes a huge message. Every
// character a reader would not see as itself is escaped (see shown.Quote).
func quoted(value string) string {
	return shown.Quoted(value, maxShownValueBytes)
}

// maxDecimalNumberBytes is the library's MAX_DECIMAL_NUMBER_BYTES (src/error.rs): the longest
// number its messages write in decimal.
const maxDecimalNumberBytes = 24

// shownNumber writes a number as the library's messages do (its shown_number): in decimal,
// as Rust writes an f64 (2.5, 0.000001, -5), or, when that is longer than
// maxDecimalNumberBytes, in Rust's exponent form (-1e300, 6.793767e-317).
func shownNumber(value float64) string {
	if decimal := strconv.FormatFloat(value, 'f', -1, 64); len(decimal) <= maxDecimalNumberBytes {
		return decimal
	}
	mantissa, exponent, _ := strings.Cut(strconv.FormatFloat(value, 'e', -1, 64), "e")
	n, _ := strconv.Atoi(exponent) // Go writes e+05; Rust writes e5
	return mantissa + "e" + strconv.Itoa(n)
}

// maxExpectedBytes is the library's MAX_EXPECTED_BYTES (src/error.rs): the most of serde's
// account of what a field takes a message keeps.
const maxExpectedBytes = 1024

// shortenedRefusal is a refusal of a document's value as the library shortens it (its
// shortened_refusal): the words up to the last ", expected " at most maxShownValueBytes (a
// refused value or key may be megabytes long), then what the field takes, the library's own
// names, at most maxExpectedBytes, each cut followed by ...(N bytes).
func shortenedRefusal(message string) string {
	refused, expected := message, ""
	if at := strings.LastIndex(message, ", expected "); at >= 0 {
		refused, expected = message[:at], message[at:]
	}
	if shown := shown.Part(refused, maxShownValueBytes); len(shown) < len(refused) {
		refused = fmt.Sprintf("%s...(%d bytes)", shown, len(refused))
	}
	if kept := shown.Part(expected, maxExpectedBytes); len(kept) < len(expected) {
		expected = fmt.Sprintf("%s...(%d bytes)", kept, len(expected))
	}
	return refused + expected
}

// statusError turns a status without a C message into an error naming the operation.
func statusError(op string, st C.pgate_status) error {
	if st == C.PGATE_STATUS_OK {
		return nil
	}
	return &Error{Status: Status(st), Message: op + " failed"}
}

// takeError turns a status and the error object a cold-path call wrote into an error, and
// frees the object. The message is copied before the object is freed.
func takeError(op string, st C.pgate_status, cerr *C.pgate_error) error {
	if cerr == nil {
		return statusError(op, st)
	}
	msg := C.GoString(C.pgate_error_message(cerr))
	status := Status(C.pgate_error_status(cerr))
	C.pgate_error_free(cerr)
	if st == C.PGATE_STATUS_OK {
		return nil // not written on success; freed defensively above
	}
	return &Error{Status: status, Message: msg}
}

// emptyRefused names a swap's refusal of an empty document, which the library words as its
// JSON parser does ("EOF while parsing a value at line 1 column 0"): New reads "" as the
// defaults, a swap refuses it (a host's mistake, not a request for the defaults). what is the
// library's name of the document ("config", "SLO config"), instead what to pass. Any other
// outcome is err unchanged (a closed gate is ErrClosed, as for any document).
func emptyRefused(err error, doc, what, instead string) error {
	if e, ok := err.(*Error); !ok || doc != "" || e.Status != StatusInvalidJSON {
		return err
	}
	return &Error{Status: StatusInvalidJSON, Message: "invalid JSON " + what + ": empty document (" + instead + ")"}
}
