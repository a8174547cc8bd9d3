package canaryproxy

import "reflect"

// What the host wraps (its errors, its ResponseWriter) is unwrapped a bounded number of
// times: an error whose Unwrap returns itself, or two that return each other, made errors.Is
// and errors.As loop forever on the request's goroutine (or the Transport's, for an error of
// the client's body), and a ResponseWriter whose Unwrap returns itself did the same to the
// Proxy's look for http.TimeoutHandler's writer.

// maxUnwraps is how many errors of one error's tree, or writers of one writer's chain, the
// Proxy looks at: far more than any real wrapping (a few levels), few enough that a cycle
// costs nothing worth counting, and only where an error or a 1xx status is handled.
const maxUnwraps = 100

// errorIs is errors.Is, looking at no more than maxUnwraps errors of err's tree. target is
// comparable (a sentinel), so comparing it never panics.
func errorIs(err, target error) bool {
	return err != nil && someError(err, func(e error) bool {
		if e == target {
			return true
		}
		is, ok := e.(interface{ Is(error) bool })
		return ok && is.Is(target)
	})
}

// errorAs is errors.As into a T (an error type, or an interface), looking at no more than
// maxUnwraps errors of err's tree: the first one that is a T, or whose As method sets one.
func errorAs[T any](err error) (found T, ok bool) {
	ok = err != nil && someError(err, func(e error) bool {
		if t, is := e.(T); is {
			found = t
			return true
		}
		as, has := e.(interface{ As(any) bool })
		return has && as.As(&found)
	})
	return found, ok
}

// someError reports whether match holds for err or an error it wraps (Unwrap() error, or
// each of Unwrap() []error), depth first in errors.Is's order, stopping at an error looked at
// already (of a comparable type: a cycle is cut where it closes, and the errors beside it are
// still looked at) and after maxUnwraps errors.
func someError(err error, match func(error) bool) bool {
	var seen, pending [maxUnwraps]error // looked at; still to look at, a stack
	pending[0] = err
	for looked, n := 0, 1; n > 0 && looked < maxUnwraps; {
		n--
		e := pending[n]
		if e == nil || lookedAt(seen[:looked], e) {
			continue
		}
		seen[looked] = e
		looked++
		if match(e) {
			return true
		}
		switch wrapper := e.(type) {
		case interface{ Unwrap() error }:
			pending[n] = wrapper.Unwrap() // n < maxUnwraps: e was just taken off
			n++
		case interface{ Unwrap() []error }:
			wrapped := wrapper.Unwrap()
			wrapped = wrapped[:min(len(wrapped), maxUnwraps-n)]
			for i := len(wrapped) - 1; i >= 0; i-- { // the first on top
				pending[n] = wrapped[i]
				n++
			}
		}
	}
	return false
}

// lookedAt reports whether e is one of seen: only an error of a comparable type can be told
// again (comparing others panics), and so cut where it closes a cycle.
func lookedAt(seen []error, e error) bool {
	if !reflect.TypeOf(e).Comparable() {
		return false
	}
	for _, s := range seen {
		if s == e {
			return true
		}
	}
	return false
}
