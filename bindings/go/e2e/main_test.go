package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestStatusWriterUnwraps: a statusWriter hides nothing of the client's writer from
// http.ResponseController (without Unwrap, Flush answered http.ErrNotSupported and a streamed
// answer waited for the end of its body).
func TestStatusWriterUnwraps(t *testing.T) {
	rec := httptest.NewRecorder()
	w := &statusWriter{ResponseWriter: rec}
	if err := http.NewResponseController(w).Flush(); err != nil {
		t.Fatalf("Flush through a statusWriter: %v", err)
	}
	if !rec.Flushed {
		t.Fatal("the client's writer was not flushed")
	}
}
