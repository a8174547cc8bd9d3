package promotiongates

import (
	"strings"
	"testing"
)

// A text that keeps growing between two reads (another process's rollbacks, applied by the
// sync thread) is asked for at most textTries times, then refused naming the call; one that
// grows by less than the slack between two reads is read on the second.
func TestReadTextGivesUpOnATextThatKeepsGrowing(t *testing.T) {
	calls := 0
	_, err := readText("pgate_rollback_history_json", func(buf []byte) (int, Status, error) {
		calls++
		return len(buf) + 1, StatusBufferTooSmall, nil // one byte more than it was given
	})
	pe := wantErr(t, err, ErrBufferTooSmall)
	if calls != textTries || !strings.HasPrefix(pe.Message, "pgate_rollback_history_json: the text kept growing: 8 tries") {
		t.Fatalf("%d calls: %v", calls, err)
	}

	calls = 0
	text, err := readText("pgate_changes_json", func(buf []byte) (int, Status, error) {
		calls++
		n := 1000 + 100*calls // longer at every call
		if n > len(buf) {
			return n, StatusBufferTooSmall, nil
		}
		return copy(buf, strings.Repeat("x", n)), StatusOK, nil
	})
	ok(t, err)
	if calls != 2 || len(text) != 1200 {
		t.Fatalf("%d calls, %d bytes", calls, len(text))
	}
}
